// Package ftppassive relays FTP through a box whose firewall does not
// understand FTP. Its Proxy accepts control connections (through a
// forward.Listener, so ACL, max_conns, accept back-off and draining are the
// same as for plain TCP), relays the control channel line by line to the FTP
// server, and rewrites the four commands and replies that carry addresses:
//
//   - PASV/EPSV: the server's 227/229 is parsed, the relay opens a data port
//     of its own (picked at random from Config.DataPorts, in a Ports table
//     that may be shared with other proxies and processes) and answers the
//     client with that port. The port accepts exactly one connection from
//     the control client's IP. The relay dials the server's data port at
//     once, while the client is being answered (the server listens from
//     the moment it replied), so the client's connection finds its other
//     half ready; the dialled connection is closed with the port if the
//     client never comes.
//   - PORT/EPRT: accepted only for the client's own address and ports >= 1024
//     (RFC 2577); the relay listens on its server-facing side, sends the
//     server its own PORT/EPRT, and dials the client when the server
//     connects. The server's 1xx/2xx to the transfer command that follows
//     reach the client only once that dial is done, as they would direct;
//     a failed dial turns them into a 425 (or 426).
//
// A 227/229 naming a data port below 1024 is answered 425. Everything else
// on the control channel passes through byte for byte, Telnet IAC sequences
// included, except a passive reply hidden in another line (behind a bare
// CR, or nested in a multi-line reply), which is removed (scrub.go). After AUTH TLS/SSL succeeds the control
// channel is encrypted and the relay passes it through as opaque TCP.
//
// The package ends at the data connection: once both sides of a transfer are
// connected, forward.Pipe moves the bytes. Parsing the addresses is done by
// pure functions in parse.go.
package ftppassive
