package admin

import "time"

// Status is the whole of /status.json: the daemon's facts, the process, and
// one merged Snapshot per listener name in config order.
type Status struct {
	Time      time.Time  `json:"time"`  // when it was read
	Ready     bool       `json:"ready"` // as /healthz
	Relay     Relay      `json:"relay"`
	Process   Process    `json:"process"`
	Listeners []Snapshot `json:"listeners"`
}

// Relay is what the daemon knows beyond its listeners' counters. Zero
// fields are unknown.
type Relay struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Config  string    `json:"config"` // path of the config file
	Loaded  time.Time `json:"loaded"` // when the config in force was applied

	// LastReload is the outcome of the last reload; nil: none since start.
	LastReload *Reload `json:"last_reload,omitempty"`

	// AdminListen is the address the admin endpoint serves on; AdminError
	// says why it is not the one the config asks for, when it is not.
	AdminListen string `json:"admin_listen"`
	AdminError  string `json:"admin_error,omitempty"`

	ACL *ACL `json:"acl,omitempty"` // nil: no ACL file, every source may connect
}

// Reload is the outcome of one reload.
type Reload struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`              // the new config is in force
	Error string    `json:"error,omitempty"` // why not, or what of it did not apply
}

// ACL is the ACL file in force and what its guards decided.
type ACL struct {
	File      string         `json:"file"`
	Rules     int            `json:"rules"`
	Decisions []ACLDecisions `json:"decisions"`
	// Recent holds the latest rejections, newest first; the daemon keeps a
	// bounded number.
	Recent []Rejection `json:"recent_rejections"`
}

// ACLDecisions counts the decisions of one listener's guard since start;
// they survive reloads.
type ACLDecisions struct {
	Listener string `json:"listener"`
	Proto    string `json:"proto"` // tcp or udp
	Allowed  uint64 `json:"allowed"`
	Rejected uint64 `json:"rejected"`
	Logged   uint64 `json:"logged"` // rejections and refusals logged one by one; the rest were summarised
	// Refused counts clients turned away by a check besides the ACL
	// whose lines share its budget: the per_source limits (clients the
	// ACL allowed), a PROXY header (relay_connections_rejected_total
	// counts both by reason) and a stranger on an FTP data port
	// (relay_ftp_refused_total{reason="data_theft"}).
	Refused uint64 `json:"refused_later"`
}

// Rejection is one client the ACL turned away.
type Rejection struct {
	Time     time.Time `json:"time"`
	Listener string    `json:"listener"`
	Proto    string    `json:"proto"`
	Client   string    `json:"client"` // ip:port
	Rule     string    `json:"rule"`   // file:line and text of the deciding line, or "no matching line"
}

// Process is the relay process as a whole.
type Process struct {
	UptimeSeconds     float64 `json:"uptime_seconds"`
	ConnectionsActive int64   `json:"connections_active"` // TCP connections and UDP sessions open now
	ConnectionsTotal  uint64  `json:"connections_total"`  // TCP connections accepted and UDP sessions created
	FDsOpen           int     `json:"fds_open"`           // -1: unknown
	FDsLimit          int     `json:"fds_limit"`          // soft RLIMIT_NOFILE; -1: unknown
}
