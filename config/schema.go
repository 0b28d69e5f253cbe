package config

import "time"

// The file schema: what the YAML file, RELAY_ variables and flags may set.
// Pointers mark keys whose absence means something different from their
// zero value (inherit a default, or: admin.listen "" disables the endpoint).
// Nothing outside this package sees these types; resolve turns them into
// Config.

type fileConfig struct {
	Log           fileLog        `koanf:"log"`
	Admin         fileAdmin      `koanf:"admin"`
	ACL           fileACL        `koanf:"acl"`
	Defaults      fileDefaults   `koanf:"defaults"`
	ShutdownGrace *duration      `koanf:"shutdown_grace"`
	Reload        fileReload     `koanf:"reload"`
	Listeners     []fileListener `koanf:"listeners"`
}

type fileReload struct {
	HardStopAfter *duration `koanf:"hard_stop_after"`
}

type fileLog struct {
	Level  *string `koanf:"level"`
	Format *string `koanf:"format"`
}

type fileAdmin struct {
	Listen *string  `koanf:"listen"`
	Hosts  []string `koanf:"hosts"` // one string is read as a list of one
}

type fileACL struct {
	File *string `koanf:"file"`
}

type fileDefaults struct {
	ConnectTimeout *duration `koanf:"connect_timeout"`
	IdleTimeout    *duration `koanf:"idle_timeout"`
	MaxConns       *int      `koanf:"max_conns"`
}

type fileListener struct {
	Name           string         `koanf:"name"`
	Mode           string         `koanf:"mode"`
	Listen         string         `koanf:"listen"`
	Upstream       []string       `koanf:"upstream"` // one string is read as a list of one
	ConnectTimeout *duration      `koanf:"connect_timeout"`
	IdleTimeout    *duration      `koanf:"idle_timeout"`
	MaxConns       *int           `koanf:"max_conns"`
	PerSource      *filePerSource `koanf:"per_source"`
	Freebind       bool           `koanf:"freebind"`
	ProxyProtocol  *string        `koanf:"proxy_protocol"`
	AcceptProxy    []string       `koanf:"accept_proxy_protocol"`
	ProxyTimeout   *duration      `koanf:"proxy_header_timeout"`
	Health         *fileHealth    `koanf:"health"`
	FTP            *fileFTP       `koanf:"ftp"`
	UDP            *fileUDP       `koanf:"udp"`
	Raw            *fileRaw       `koanf:"raw"`

	TLS         *fileTLS         `koanf:"tls"`
	UpstreamTLS *fileUpstreamTLS `koanf:"upstream_tls"`
}

type filePerSource struct {
	MaxConns   *int       `koanf:"max_conns"`
	Rate       *perSecond `koanf:"rate"`
	Burst      *int       `koanf:"burst"`
	IPv4Prefix *int       `koanf:"ipv4_prefix"`
	IPv6Prefix *int       `koanf:"ipv6_prefix"`
}

// fileTLS terminates TLS on a tcp or raw listener.
type fileTLS struct {
	Cert        string     `koanf:"cert"`
	Key         string     `koanf:"key"`
	ClientCA    string     `koanf:"client_ca"`
	MinVersion  tlsVersion `koanf:"min_version"`
	KeyExchange string     `koanf:"key_exchange"`
}

// fileUpstreamTLS originates TLS to a tcp or raw listener's upstream.
type fileUpstreamTLS struct {
	CA          string `koanf:"ca"`
	ServerName  string `koanf:"server_name"`
	Cert        string `koanf:"cert"`
	Key         string `koanf:"key"`
	KeyExchange string `koanf:"key_exchange"`
}

type fileHealth struct {
	Interval *duration `koanf:"interval"`
	Timeout  *duration `koanf:"timeout"`
	Send     *string   `koanf:"send"`
	Expect   *string   `koanf:"expect"`
}

type fileFTP struct {
	DataPorts     *string   `koanf:"data_ports"`
	PublicIP      string    `koanf:"public_ip"`
	TrustServerIP bool      `koanf:"trust_server_ip"`
	DataTimeout   *duration `koanf:"data_timeout"`
}

type fileUDP struct {
	SessionTimeout *duration  `koanf:"session_timeout"`
	MaxSessions    *int       `koanf:"max_sessions"`
	Unconfirmed    *duration  `koanf:"unconfirmed_timeout"`
	PerSource      *int       `koanf:"max_sessions_per_source"`
	PerSourceRate  *perSecond `koanf:"per_source_rate"`
	ReadBuffer     *byteSize  `koanf:"read_buffer"`
	WriteBuffer    *byteSize  `koanf:"write_buffer"`
}

type fileRaw struct {
	Exclusive    bool      `koanf:"exclusive"`
	QueueTimeout *duration `koanf:"queue_timeout"`
	UserTimeout  *duration `koanf:"user_timeout"`
}

// duration is a time.Duration written with a unit ("30s", "1h"); a bare
// number other than 0 is refused, since "5" could mean seconds or nanoseconds.
type duration time.Duration

// perSecond is a rate, written as a number per second or with a period
// ("10/s", "600/m", "3600/h").
type perSecond float64

// byteSize is a count of bytes, written as a number or with a unit
// ("4MiB", "512KiB", "1MB").
type byteSize int

// tlsVersion is a TLS version, "1.2" or "1.3"; written without quotes it is
// a YAML number, and read as the same version.
type tlsVersion string
