package service

import (
	"fmt"
	"reflect"

	"github.com/caarlos0/env/v11"
)

// WithDefaults fills every zero field of cfg (a pointer to a struct) with
// its envDefault tag, so a configuration built by hand (tests, the
// all-in-one) gets the same defaults as one loaded from the environment,
// and each default is stated once, in its tag.
func WithDefaults(cfg any) error {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("defaults: %T is not a pointer to a struct", cfg)
	}
	defaults := reflect.New(v.Elem().Type())
	if err := env.ParseWithOptions(defaults.Interface(), env.Options{Environment: map[string]string{}}); err != nil {
		return fmt.Errorf("defaults: %w", err)
	}
	fillZero(v.Elem(), defaults.Elem())
	return nil
}

func fillZero(dst, defaults reflect.Value) {
	for i := range dst.NumField() {
		f := dst.Field(i)
		switch {
		case !f.CanSet():
		case f.Kind() == reflect.Struct && dst.Type().Field(i).Tag.Get("env") == "":
			fillZero(f, defaults.Field(i))
		case f.IsZero():
			f.Set(defaults.Field(i))
		}
	}
}
