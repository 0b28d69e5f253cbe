package config

import "reflect"

// emptySections turns each optional section written with nothing after it
// (YAML null: "tls:" whose keys were commented out) into an empty one, as
// if written "tls: {}". The decoder leaves a null section's pointer nil,
// the same as no section: a listener meant to terminate TLS then served
// plain TCP without a word. An empty section gets the checks of one
// (tls.cert missing, per_source sets no limit, raw only for mode raw).
func emptySections(raw any, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			emptySections(raw, v.Elem())
		}
	case reflect.Slice:
		items, ok := raw.([]any)
		if !ok || len(items) != v.Len() {
			return
		}
		for i, item := range items {
			emptySections(item, v.Index(i))
		}
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return
		}
		for i := range v.NumField() {
			val, present := m[v.Type().Field(i).Tag.Get("koanf")]
			f := v.Field(i)
			switch {
			case !present:
			case val == nil && f.Kind() == reflect.Pointer && f.IsNil() && f.Type().Elem().Kind() == reflect.Struct:
				f.Set(reflect.New(f.Type().Elem()))
			default:
				emptySections(val, f)
			}
		}
	}
}
