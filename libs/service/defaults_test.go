package service_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/service"
)

func TestWithDefaults(t *testing.T) {
	type inner struct {
		Wait time.Duration `env:"WAIT" envDefault:"2s"`
	}
	cfg := struct {
		Addr  string   `env:"ADDR" envDefault:":8080"`
		Roles []string `env:"ROLES" envDefault:"a,b" envSeparator:","`
		Set   int      `env:"SET" envDefault:"7"`
		None  string   `env:"NONE"`
		Inner inner
	}{Set: 3}
	if err := service.WithDefaults(&cfg); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(cfg.Addr, cfg.Roles, cfg.Set, cfg.None == "", cfg.Inner.Wait)
	if want := ":8080[a b] 3 true 2s"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
