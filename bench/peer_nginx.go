package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// nginxStreamModule is where Debian's libnginx-mod-stream puts the stream
// module; the nginx package alone does not carry it.
const nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// nginx is nginx's stream module with one worker per core, as a user would
// configure it (worker_processes auto).
type nginx struct {
	bin string
}

func (nginx) name() string { return "nginx" }

func (nginx) unsupported(mode string) string {
	switch mode {
	case "ftp":
		return "does not rewrite PASV/EPSV"
	case "tunnel":
		return noTunnel
	}
	return ""
}

func (n nginx) start(e *env, routes []route) (*instance, error) {
	in, specs, err := listenPorts(e, "nginx", routes)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.dir, "nginx")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var b strings.Builder
	if _, err := os.Stat(nginxStreamModule); err == nil {
		fmt.Fprintf(&b, "load_module %s;\n", nginxStreamModule)
	}
	fmt.Fprintf(&b, `daemon off;
master_process on;
user root;
worker_processes auto;
worker_rlimit_nofile %[2]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
    worker_connections %[2]d;
}
stream {
`, dir, e.files)
	for _, r := range routes {
		listen := in.addr(r.name)
		if r.proto() == "udp" {
			// reuseport keeps one client's flow on one worker; without it
			// the backend sees several source ports for one client.
			listen += " udp reuseport"
		}
		fmt.Fprintf(&b, "    server {\n        listen %s;\n        proxy_pass %s;\n        proxy_timeout 1h;\n    }\n",
			listen, r.upstream)
	}
	b.WriteString("}\n")
	cfg := filepath.Join(dir, "nginx.conf")
	return launch(e, in, specs, cfg, b.String(), n.bin, "-p", dir, "-c", cfg, "-e", filepath.Join(dir, "error.log"))
}
