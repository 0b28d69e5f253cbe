package config

import (
	"errors"
	"flag"

	"github.com/knadh/koanf/maps"
)

// Flags are the command-line overrides RegisterFlags added to a FlagSet.
// Only flags the user set override the file and environment.
type Flags struct {
	fs   *flag.FlagSet
	keys map[string]string // flag name -> config key it sets
}

// RegisterFlags adds -log-level, -log-format, -admin-listen, -shutdown-grace
// and -acl-file to fs. Pass the result to Load in LoadOptions.Flags after
// fs.Parse. Values are checked by Load, like the file's.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs, keys: make(map[string]string)}
	for _, d := range []struct{ name, key, usage string }{
		{"log-level", "log.level", "log `level`: debug, info, warn or error (overrides log.level)"},
		{"log-format", "log.format", "log `format`: auto, json or console (overrides log.format)"},
		{"admin-listen", "admin.listen", "admin endpoint `host:port`; empty disables it (overrides admin.listen)"},
		{"shutdown-grace", "shutdown_grace", "drain `duration` on SIGTERM, like 30s (overrides shutdown_grace)"},
		{"acl-file", "acl.file", "ACL `file` (overrides acl.file; a relative one is beside the config file, as acl.file is)"},
	} {
		fs.String(d.name, "", d.usage)
		f.keys[d.name] = d.key
	}
	return f
}

// set returns the key -> value pairs of the flags given on the command line,
// and key -> flag name for error messages.
func (f *Flags) set() (values map[string]any, names map[string]string) {
	values = make(map[string]any)
	names = make(map[string]string)
	if f == nil || f.fs == nil {
		return values, names
	}
	f.fs.Visit(func(fl *flag.Flag) {
		if key, ok := f.keys[fl.Name]; ok {
			values[key] = fl.Value.String()
			names[key] = fl.Name
		}
	})
	return values, names
}

// mapProvider is a koanf.Provider for values already in hand, given as
// flat "a.b" keys.
type mapProvider map[string]any

func (m mapProvider) ReadBytes() ([]byte, error) {
	return nil, errors.New("config: map provider has no bytes")
}

func (m mapProvider) Read() (map[string]any, error) {
	return maps.Unflatten(m, "."), nil
}
