package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	kyaml "github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
)

// LoadOptions says where Load reads from.
type LoadOptions struct {
	Path    string   // YAML file; required
	Environ []string // "KEY=value" pairs; nil: os.Environ(); empty: no overrides
	Flags   *Flags   // from RegisterFlags, after parsing; nil: no flag overrides
}

// envPrefix starts every environment variable that overrides a key.
const envPrefix = "RELAY_"

// Load reads the file at opts.Path, applies RELAY_ environment variables and
// then flags, and returns the validated, resolved configuration. A file that
// cannot be read gives one error naming it; an invalid configuration gives
// Errors, one FieldError per problem.
func Load(opts LoadOptions) (*Config, error) {
	if opts.Path == "" {
		return nil, errors.New("config: no config file given")
	}
	f, err := os.Open(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := readLimited(f, opts.Path)
	if err != nil {
		return nil, err
	}
	environ := opts.Environ
	if environ == nil {
		environ = os.Environ()
	}
	return load(opts.Path, data, environ, opts.Flags)
}

// Parse reads a configuration from r alone, without environment or flags;
// name is used in error messages and as Config.Path.
func Parse(r io.Reader, name string) (*Config, error) {
	data, err := readLimited(r, name)
	if err != nil {
		return nil, err
	}
	return load(name, data, []string{}, nil)
}

func load(name string, data []byte, environ []string, flags *Flags) (*Config, error) {
	src := &sources{file: name, lines: make(map[string]int)}
	p := &problems{src: src}
	root, err := parseYAML(name, data)
	if err != nil {
		return nil, err
	}
	if root != nil {
		// Before anything expands aliases: indexYAML, and koanf's decode.
		if err := checkExpansion(name, root); err != nil {
			return nil, err
		}
		indexYAML(root, "", src.lines, p)
		if err := p.err(); err != nil {
			return nil, err // duplicate keys: the koanf parser would refuse them less clearly
		}
	}

	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(data), kyaml.Parser()); err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	src.env = loadEnv(k, environ, p)
	flagValues, flagNames := flags.set()
	if err := k.Load(mapProvider(flagValues), nil); err != nil {
		return nil, fmt.Errorf("config: flags: %w", err)
	}
	src.flags = flagNames

	unknownKeys(k.Raw(), reflect.TypeFor[fileConfig](), "", p)
	var fc fileConfig
	decodeInto(k, &fc, p)
	if err := p.err(); err != nil {
		// Decoding went wrong somewhere; checking the half-filled result
		// would only add noise.
		return nil, err
	}
	cfg := resolve(&fc, p)
	if err := p.err(); err != nil {
		return nil, err
	}
	cfg.Path = name
	return cfg, nil
}

// loadEnv merges RELAY_ variables into k and returns key path -> variable
// name. Listeners are a list, which a flat variable name cannot address
// without surprising merges, so RELAY_LISTENERS... is refused.
func loadEnv(k *koanf.Koanf, environ []string, p *problems) map[string]string {
	names := make(map[string]string)
	var refused []string
	provider := env.Provider(".", env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			key := envKey(name)
			switch {
			case key == "":
				return "", nil
			case key == "listeners" || strings.HasPrefix(key, "listeners."):
				refused = append(refused, name)
				return "", nil
			}
			names[key] = name
			return key, value
		},
	})
	if err := k.Load(provider, nil); err != nil {
		p.list = append(p.list, &FieldError{Where: "environment", Msg: err.Error()})
	}
	for _, name := range refused {
		p.list = append(p.list, &FieldError{Where: "environment " + name,
			Msg: "listeners cannot be set from the environment; edit the file"})
	}
	return names
}

// envKey maps RELAY_DEFAULTS__CONNECT_TIMEOUT to defaults.connect_timeout.
func envKey(name string) string {
	rest := strings.TrimPrefix(name, envPrefix)
	return strings.ReplaceAll(strings.ToLower(rest), "__", ".")
}
