package config

import "testing"

// TestNumberWhereAnAddressGoes: "listen: 8080", "upstream: 80" and
// "data_ports: 30000" (a port alone where an address or a range goes), and
// "proxy_protocol: 2", say what to write; they said only "want text, got the number 8080", and
// quoting it gave the next error ("8080" has no port).
func TestNumberWhereAnAddressGoes(t *testing.T) {
	for _, tc := range []struct{ yaml, path, msg string }{
		{"listeners:\n  - {name: a, mode: tcp, listen: 8080, upstream: '10.0.0.5:80'}\n",
			"listeners[0].listen", `want text, got the number 8080: write "0.0.0.0:8080" for every address, or "IP:8080"`},
		{"admin: {listen: 9090}\nlisteners:" + one,
			"admin.listen", `write "0.0.0.0:9090" for every address`},
		{"listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:8080', upstream: [80, '10.0.0.6:80']}\n",
			"listeners[0].upstream[0]", `want text, got the number 80: write "HOST:80"`},
		{"listeners:\n  - {name: f, mode: ftp, listen: '127.0.0.1:2121', upstream: '10.0.0.5:21', ftp: {data_ports: 30000}}\n",
			"listeners[0].ftp.data_ports", `write a range like "30000-30099" (or one port in quotes, "30000")`},
		{"listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:8080', upstream: '10.0.0.5:80', proxy_protocol: 2}\n",
			"listeners[0].proxy_protocol", "want text, got the number 2: write v2"},
		{"listeners:\n  - {name: 7, mode: tcp, listen: '127.0.0.1:8080', upstream: '10.0.0.5:80'}\n",
			"listeners[0].name", "want text, got the number 7"},
	} {
		wantProblem(t, tc.yaml, tc.path, tc.msg)
	}
}
