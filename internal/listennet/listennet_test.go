package listennet

import "testing"

func TestTCP(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:80":           "tcp4",
		"127.0.0.1:9090":       "tcp4",
		"[::]:80":              "tcp",
		"[::1]:9090":           "tcp",
		":9090":                "tcp",
		"[::ffff:10.0.0.1]:80": "tcp",
		"localhost:80":         "tcp",
	} {
		if got := TCP(addr); got != want {
			t.Errorf("TCP(%q) = %q, want %q", addr, got, want)
		}
	}
}
