package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/v2"
)

// unknownKeys walks the merged key tree beside the schema type t and reports
// every key the schema does not have. Values of the wrong shape are left to
// the decoder, which reports them.
func unknownKeys(v any, t reflect.Type, path string, p *problems) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		fields := schemaFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				p.add(joinPath(path, k), unknownKeyMsg(k, fields))
				continue
			}
			unknownKeys(m[k], ft, joinPath(path, k), p)
		}
	case reflect.Slice:
		items, ok := v.([]any)
		if !ok {
			return
		}
		for i, item := range items {
			unknownKeys(item, t.Elem(), indexPath(path, i), p)
		}
	}
}

// schemaFields maps the koanf tags of struct type t to their field types.
func schemaFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("koanf"); tag != "" {
			fields[tag] = f.Type
		}
	}
	return fields
}

// unknownKeyMsg suggests the nearest known key for a likely typo, or lists
// the keys allowed at that level.
func unknownKeyMsg(key string, fields map[string]reflect.Type) string {
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	slices.Sort(known)
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key (did you mean %s?)", best)
	}
	return "unknown key (known here: " + strings.Join(known, ", ") + ")"
}

// editDistance is the Levenshtein distance between a and b, by bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// decodeInto decodes the merged keys of k into out, reporting each value of
// the wrong type at its key path.
func decodeInto(k *koanf.Koanf, out *fileConfig, p *problems) {
	err := k.UnmarshalWithConf("", out, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.DecodeHookFuncType(decodeHook),
			TagName:    "koanf",
		},
	})
	collectDecodeErrors(err, p)
	// "listen:" with nothing after it is YAML null, which the decoder
	// skips; for admin.listen it must still mean "disabled", like "".
	if out.Admin.Listen == nil && k.Exists("admin.listen") {
		out.Admin.Listen = new(string)
	}
	// An acl section without its file line (commented out) must not open
	// every listener to every source: it reads as an empty acl.file,
	// which resolve refuses.
	if out.ACL.File == nil && k.Exists("acl") {
		out.ACL.File = new(string)
	}
	emptySections(k.Raw(), reflect.ValueOf(out).Elem())
}

// collectDecodeErrors walks the tree of joined mapstructure errors and adds
// one problem per failing key.
func collectDecodeErrors(err error, p *problems) {
	if err == nil {
		return
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			collectDecodeErrors(e, p)
		}
		return
	}
	// The decoder returns its errors joined inside a wrapper; errors.As
	// below would find only the first of them.
	if _, isDecode := err.(*mapstructure.DecodeError); !isDecode {
		if inner := errors.Unwrap(err); inner != nil {
			collectDecodeErrors(inner, p)
			return
		}
	}
	var de *mapstructure.DecodeError
	if !errors.As(err, &de) {
		p.add("", err.Error())
		return
	}
	inner := de.Unwrap()
	if _, ok := inner.(interface{ Unwrap() []error }); ok {
		collectDecodeErrors(inner, p)
		return
	}
	if nested := (*mapstructure.DecodeError)(nil); errors.As(inner, &nested) {
		collectDecodeErrors(inner, p)
		return
	}
	if wt := (*wantTextError)(nil); errors.As(inner, &wt) {
		p.add(de.Name(), wt.Error()+textHint(de.Name(), wt.got))
		return
	}
	var ut *mapstructure.UnconvertibleTypeError
	if errors.As(inner, &ut) {
		p.addf(de.Name(), "want %s, got %s", wantName(ut.Expected.Type()), describeValue(ut.Value))
		return
	}
	p.add(de.Name(), inner.Error())
}

// decodeHook converts what YAML, the environment and flags give (numbers,
// strings, lists) into the schema's types, with messages a person can act
// on. Values from the environment and flags are always strings.
func decodeHook(from, to reflect.Type, data any) (any, error) {
	switch to {
	case reflect.TypeFor[duration]():
		return toDuration(data)
	case reflect.TypeFor[byteSize]():
		return toByteSize(data)
	case reflect.TypeFor[perSecond]():
		return toPerSecond(data)
	case reflect.TypeFor[tlsVersion]():
		return toTLSVersion(data)
	case reflect.TypeFor[[]string]():
		switch v := data.(type) {
		case string:
			return []string{v}, nil
		case []any, []string:
			return data, nil
		}
		return nil, fmt.Errorf("want a list, got %s", describeValue(data))
	}
	switch to.Kind() {
	case reflect.Int:
		return toInt(data)
	case reflect.Bool:
		if s, ok := data.(string); ok {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return nil, fmt.Errorf("want true or false, got %q", s)
			}
			return b, nil
		}
	case reflect.String:
		if _, ok := data.(string); !ok {
			return nil, &wantTextError{got: data}
		}
	case reflect.Slice:
		if _, ok := data.([]any); !ok {
			return nil, fmt.Errorf("want a list, got %s", describeValue(data))
		}
	case reflect.Struct:
		if _, ok := data.(map[string]any); !ok {
			return nil, fmt.Errorf("want a mapping of keys, got %s", describeValue(data))
		}
	}
	return data, nil
}

func toDuration(data any) (any, error) {
	switch v := data.(type) {
	case duration:
		return v, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("want a duration like 30s, 5m or 1h, got %q", v)
		}
		return duration(d), nil
	case int:
		if v == 0 {
			return duration(0), nil
		}
		return nil, fmt.Errorf("duration %d has no unit (write %ds, %dms, ...)", v, v, v)
	}
	return nil, fmt.Errorf("want a duration like 30s, got %s", describeValue(data))
}

func toByteSize(data any) (any, error) {
	switch v := data.(type) {
	case byteSize:
		return v, nil
	case int:
		// The same cap as a written size: socket options take a C int.
		if v < 0 || v > math.MaxInt32 {
			return nil, fmt.Errorf("want a size like 4MiB, 512KiB or 262144 (bytes, under 2GiB), got %d", v)
		}
		return byteSize(v), nil
	case string:
		n, err := parseSize(v)
		if err != nil {
			return nil, err
		}
		return byteSize(n), nil
	}
	return nil, fmt.Errorf("want a size like 4MiB or 262144, got %s", describeValue(data))
}

func toPerSecond(data any) (any, error) {
	const want = "want a rate like 10/s, 600/m or 3600/h (or a number per second)"
	switch v := data.(type) {
	case perSecond:
		return v, nil
	case int:
		return perSecond(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) { // YAML's .nan and .inf
			return nil, fmt.Errorf("%s, got %s", want, describeValue(data))
		}
		return perSecond(v), nil
	case string:
		num, per := strings.TrimSpace(v), 1.0
		for _, u := range []struct {
			suffix string
			secs   float64
		}{{"/s", 1}, {"/m", 60}, {"/min", 60}, {"/h", 3600}} {
			if n, ok := strings.CutSuffix(num, u.suffix); ok {
				num, per = strings.TrimSpace(n), u.secs
				break
			}
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%s, got %q", want, v)
		}
		return perSecond(f / per), nil
	}
	return nil, fmt.Errorf("%s, got %s", want, describeValue(data))
}

func toTLSVersion(data any) (any, error) {
	switch v := data.(type) {
	case tlsVersion, string:
		return v, nil
	case float64:
		return tlsVersion(strconv.FormatFloat(v, 'f', -1, 64)), nil
	case int:
		return tlsVersion(strconv.Itoa(v)), nil
	}
	return nil, fmt.Errorf("want a version like 1.3, got %s", describeValue(data))
}

func toInt(data any) (any, error) {
	switch v := data.(type) {
	case int:
		return v, nil
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("want a whole number, got %q", v)
		}
		return n, nil
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int(v), nil
		}
	}
	return nil, fmt.Errorf("want a whole number, got %s", describeValue(data))
}

// parseSize reads "4194304", "4MiB", "512KiB", "1GiB", or decimal "4MB".
func parseSize(s string) (int, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
	}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt32/mult {
		return 0, fmt.Errorf("want a size like 4MiB, 512KiB or 262144 (bytes, under 2GiB), got %q", s)
	}
	return int(n * mult), nil
}

// wantName says in words what a schema type expects.
func wantName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping of keys"
	case reflect.Int:
		return "a whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "text"
	}
	return t.String()
}

// describeValue says in words what a decoded YAML value is.
func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	case int, int64, uint64, float64:
		return fmt.Sprintf("the number %v", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	case time.Time:
		return "a date"
	}
	return fmt.Sprintf("%T", v)
}
