// Package examples holds the ready-made configurations shipped with relay:
// the CAYIN digital-signage layout (cayin.yaml, printed by `relay example`),
// the Theatre Manager layout, and the two ends of the box-office TLS tunnel
// (venue-tunnel.yaml, box-office.yaml, with demo certificates in tls-demo/),
// each with its pg_hba-style ACL file beside it. It only embeds the files; config and acl read them.
//
// Each YAML names its ACL file by a relative path (acl.file:
// cayin_hba.conf), which the daemon resolves against the folder of the
// config file, so a config and its ACL are installed side by side.
package examples

import "embed"

// CAYIN is cayin.yaml, the commented example `relay example` prints.
//
//go:embed cayin.yaml
var CAYIN []byte

// CAYINACL is cayin_hba.conf, the ACL file cayin.yaml names; `relay
// example -acl` prints it.
//
//go:embed cayin_hba.conf
var CAYINACL []byte

// FS holds every example config and ACL file (not the demo certificates).
//
//go:embed *.yaml *.conf
var FS embed.FS
