package service_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
)

type partA struct {
	Methods []string `env:"ALLOWED_METHODS" envDefault:"local_copy" envSeparator:","`
	Root    string   `env:"SOURCE_ROOT"`
}

type partB struct {
	Methods []string      `env:"ALLOWED_METHODS" envDefault:"local_copy" envSeparator:","`
	Wait    time.Duration `env:"WAIT" envDefault:"5s"`
	Token   string        `env:"TOKEN" secret:"true"`
}

type combined struct {
	service.Base
	A partA
	B partB
}

func TestLoadEnvThenFlags(t *testing.T) {
	t.Setenv("STAGING_SOURCE_ROOT", "/from/env")
	t.Setenv("STAGING_WAIT", "7s")
	var cfg combined
	err := service.Load(&cfg, "test", []string{"-allowed-methods", "local_copy,jupyter_copy", "-nats-url", "nats://h:1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := combined{
		// The stream bounds' defaults are the contract's, which a service
		// built without this configuration (a test) gets.
		Base: service.Base{
			NATSURL: "nats://h:1", EventsMaxAge: 720 * time.Hour, StreamReplicas: 1, LogLevel: "info",
			RequestsMaxAge: contract.DefaultRequestsMaxAge, RequestsMaxMsgs: contract.DefaultRequestsMaxMsgs, RequestsMaxBytes: contract.DefaultRequestsMaxBytes,
			HTTP: service.HTTPTimeouts{Read: 30 * time.Second, Write: time.Minute, Idle: time.Minute},
		},
		A: partA{Methods: []string{"local_copy", "jupyter_copy"}, Root: "/from/env"},
		B: partB{Methods: []string{"local_copy", "jupyter_copy"}, Wait: 7 * time.Second},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
}

func TestLoadRejectsBadValues(t *testing.T) {
	t.Setenv("STAGING_WAIT", "soon")
	var cfg combined
	if err := service.Load(&cfg, "test", nil, io.Discard); err == nil {
		t.Fatal("Load accepted STAGING_WAIT=soon")
	}
	t.Setenv("STAGING_WAIT", "1s")
	if err := service.Load(&cfg, "test", []string{"-no-such-flag"}, io.Discard); err == nil {
		t.Fatal("Load accepted an unknown flag")
	}
}

func TestLogConfigMasksSecrets(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	service.LogConfig(log, combined{
		Base: service.Base{NATSURL: "nats://stager:pw-s3cret-value@nats-a:4222,nats://stager:pw-s3cret-value@nats-b:4222"},
		B:    partB{Token: "s3cret-value"}, A: partA{Root: "/data"},
	})
	out := buf.String()
	if strings.Contains(out, "s3cret-value") {
		t.Errorf("secret appears in the logged configuration: %s", out)
	}
	for _, want := range []string{`"token":"***"`, `"source_root":"/data"`, `"nats_url":"nats://***@nats-a:4222,nats://***@nats-b:4222"`} {
		if !strings.Contains(out, want) {
			t.Errorf("logged configuration lacks %s: %s", want, out)
		}
	}
}

type renamed struct {
	Timeout time.Duration `env:"STAGER_STAGE_TIMEOUT" envDeprecated:"STAGE_TIMEOUT" envDefault:"6h"`
	Workers int           `env:"STAGER_COPY_WORKERS" envDeprecated:"COPY_WORKERS" envDefault:"4"`
}

// A renamed variable's old name still sets it for one release, unless the
// new name is set too; either way its use is warned of.
func TestDeprecatedNames(t *testing.T) {
	t.Setenv("STAGING_STAGE_TIMEOUT", "2h")
	t.Setenv("STAGING_COPY_WORKERS", "8")
	t.Setenv("STAGING_STAGER_COPY_WORKERS", "16")
	var cfg struct{ S renamed }
	if err := service.Load(&cfg, "test", nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cfg.S, renamed{Timeout: 2 * time.Hour, Workers: 16}); diff != "" {
		t.Errorf("Load (-got +want):\n%s", diff)
	}

	var buf strings.Builder
	service.LogConfig(slog.New(slog.NewJSONHandler(&buf, nil)), cfg)
	var warned []string
	for line := range strings.Lines(buf.String()) {
		if strings.Contains(line, `"msg":"deprecated_variable"`) {
			warned = append(warned, line[strings.Index(line, `"variable"`):])
		}
	}
	want := []string{
		`"variable":"STAGING_STAGE_TIMEOUT","use":"STAGING_STAGER_STAGE_TIMEOUT","ignored":false}` + "\n",
		`"variable":"STAGING_COPY_WORKERS","use":"STAGING_STAGER_COPY_WORKERS","ignored":true}` + "\n",
	}
	if diff := cmp.Diff(warned, want); diff != "" {
		t.Errorf("warnings (-got +want):\n%s", diff)
	}
}

// A renamed variable's old flag is an alias of the new one, and warns.
func TestDeprecatedFlags(t *testing.T) {
	type both struct {
		Timeout time.Duration `env:"STAGER_STAGE_TIMEOUT" envDeprecated:"STAGE_TIMEOUT" envDefault:"6h"`
		Sync    bool          `env:"STAGER_SYNC_COPIES" envDeprecated:"SYNC_COPIES" envDefault:"true"`
	}
	var cfg struct{ A, B both }
	var out strings.Builder
	if err := service.Load(&cfg, "test", []string{"-stage-timeout", "2h", "-sync-copies=false"}, &out); err != nil {
		t.Fatal(err)
	}
	want := both{Timeout: 2 * time.Hour, Sync: false}
	if diff := cmp.Diff(cfg.A, want); diff != "" {
		t.Errorf("Load, first service (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(cfg.B, want); diff != "" {
		t.Errorf("Load, second service (-got +want):\n%s", diff)
	}
	for _, w := range []string{
		`"msg":"deprecated_flag","flag":"-stage-timeout","use":"-stager-stage-timeout"`,
		`"msg":"deprecated_flag","flag":"-sync-copies","use":"-stager-sync-copies"`,
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output %q lacks %s", out.String(), w)
		}
	}
}
