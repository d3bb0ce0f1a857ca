// Package service is the start-up and shutdown every service binary shares:
// configuration from STAGING_* environment variables with matching flags,
// the logger, the tracer provider, the NATS connection and streams, the ops
// endpoints, and an orderly shutdown.
package service

import (
	"encoding"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/skao/skao-staging/libs/bus"
)

// EnvPrefix prefixes every configuration variable.
const EnvPrefix = "STAGING_"

// Base is the configuration every service has.
type Base struct {
	// NATSURL is empty by default: a service then connects to
	// nats://127.0.0.1:4222, and the all-in-one runs its own server.
	NATSURL string `env:"NATS_URL" help:"NATS server URL(s), comma-separated (default nats://127.0.0.1:4222; the all-in-one embeds a server when unset)"`
	// NATSNkeyFile and NATSCredsFile are the client's NATS credentials,
	// besides a user and password in the URL: a user nkey seed (the
	// all-in-one's <data dir>/nats-admin.nk), or a .creds file (user JWT
	// and seed, as nsc issues). At most one; Start checks the file.
	NATSNkeyFile  string `env:"NATS_NKEY_FILE" help:"file holding the user nkey seed to connect to NATS with (e.g. the all-in-one's <data dir>/nats-admin.nk); not with -nats-creds-file"`
	NATSCredsFile string `env:"NATS_CREDS_FILE" help:"NATS credentials file (user JWT and nkey seed, as nsc issues) to connect with; not with -nats-nkey-file"`
	// EventsMaxAge is how long STAGING_EVENTS keeps events.
	EventsMaxAge time.Duration `env:"EVENTS_MAX_AGE" envDefault:"720h" help:"how long the event stream keeps events"`
	// RequestsMaxAge, RequestsMaxMsgs and RequestsMaxBytes bound the
	// command queue (STAGING_REQUESTS); a full queue refuses new commands.
	RequestsMaxAge   time.Duration `env:"REQUESTS_MAX_AGE" envDefault:"168h" help:"how long a command waits in the queue for a worker before it is dropped and the audit records its request as failed (queue_expired) (at least the 20m deduplication window)"`
	RequestsMaxMsgs  int64         `env:"REQUESTS_MAX_MSGS" envDefault:"100000" help:"most commands the queue holds; a publish beyond is refused (queue_full)"`
	RequestsMaxBytes int64         `env:"REQUESTS_MAX_BYTES" envDefault:"1073741824" help:"most bytes the queue holds; a publish beyond is refused (queue_full)"`
	// StreamReplicas is the JetStream replica count of the streams.
	StreamReplicas int    `env:"STREAM_REPLICAS" envDefault:"1" help:"replicas of the JetStream streams (3 on a cluster)"`
	LogLevel       string `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	LogFile        string `env:"LOG_FILE" help:"also append logs to this file"`
	// HTTP bounds the connections of the process's HTTP servers.
	HTTP HTTPTimeouts
}

// Load fills cfg (a pointer to a struct) from the STAGING_* environment,
// then lets command-line flags override it: each variable STAGING_FOO_BAR
// has a flag -foo-bar. It returns flag.ErrHelp after printing the usage
// when asked for it.
//
// A field tagged envDeprecated:"OLD" was once read as STAGING_OLD: for one
// release that name still sets it where the new one is not set, and
// LogConfig warns that it is used; its flag -old is an alias of the new
// flag that warns on out when it is used.
func Load(cfg any, name string, args []string, out io.Writer) error {
	environ := env.ToMap(os.Environ())
	for _, r := range renames(reflect.TypeOf(cfg).Elem()) {
		if _, set := environ[EnvPrefix+r.name]; set {
			continue
		}
		if v, set := environ[EnvPrefix+r.old]; set {
			environ[EnvPrefix+r.name] = v
		}
	}
	if err := env.ParseWithOptions(cfg, env.Options{Prefix: EnvPrefix, Environment: environ}); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fields := map[string][]reflect.Value{}
	if err := defineFlags(fs, reflect.ValueOf(cfg).Elem(), fields); err != nil {
		return err
	}
	for _, r := range renames(reflect.TypeOf(cfg).Elem()) {
		defineRenamedFlag(fs, r, out)
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage of %s (every flag can also be set as STAGING_<FLAG>, e.g. -nats-url as STAGING_NATS_URL):\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Several services in one binary may read the same variable (the
	// all-in-one's stager and gateway both read ALLOWED_METHODS); the flag
	// is bound to the first field, so copy what it set to the others.
	fs.Visit(func(f *flag.Flag) {
		same := fields[f.Name]
		if len(same) < 2 { // one field, or a deprecated alias
			return
		}
		for _, other := range same[1:] {
			other.Set(same[0])
		}
	})
	return nil
}

// rename is a configuration variable read under a new name, and the
// deprecated name it had before (both without EnvPrefix).
type rename struct{ name, old string }

// renames lists the renamed variables of a configuration struct type, in
// the fields' order; nested structs are walked as Load walks them.
func renames(t reflect.Type) []rename {
	var out []rename
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, renames(f.Type)...)
			continue
		}
		if old := f.Tag.Get("envDeprecated"); old != "" && name != "" {
			out = append(out, rename{name: name, old: old})
		}
	}
	return out
}

// defineRenamedFlag defines the flag of r's old name as an alias of the
// new one, which warns on out, as a log line, each time it is used.
func defineRenamedFlag(fs *flag.FlagSet, r rename, out io.Writer) {
	old, name := flagName(r.old), flagName(r.name)
	target := fs.Lookup(name)
	if target == nil || fs.Lookup(old) != nil {
		return
	}
	usage := "deprecated: use -" + name
	set := func(v string) error {
		slog.New(slog.NewJSONHandler(out, nil)).Warn("deprecated_flag", "flag", "-"+old, "use", "-"+name)
		return fs.Set(name, v)
	}
	if b, ok := target.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		fs.BoolFunc(old, usage, set)
		return
	}
	fs.Func(old, usage, set)
}

// flagName is the flag of variable STAGING_<name>: -foo-bar for FOO_BAR.
func flagName(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// warnRenamed warns of every deprecated variable set in the environment,
// and says when its new name, also set, overrides it.
func warnRenamed(log *slog.Logger, t reflect.Type) {
	seen := map[string]bool{}
	for _, r := range renames(t) {
		if _, set := os.LookupEnv(EnvPrefix + r.old); !set || seen[r.old] {
			continue
		}
		seen[r.old] = true
		_, ignored := os.LookupEnv(EnvPrefix + r.name)
		log.Warn("deprecated_variable", "variable", EnvPrefix+r.old, "use", EnvPrefix+r.name, "ignored", ignored)
	}
}

func defineFlags(fs *flag.FlagSet, v reflect.Value, fields map[string][]reflect.Value) error {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if f.Anonymous || (f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" && f.Type != reflect.TypeFor[time.Time]()) {
			if err := defineFlags(fs, fv, fields); err != nil {
				return err
			}
			continue
		}
		name := f.Tag.Get("env")
		if name == "" || !f.IsExported() {
			continue
		}
		flagName := flagName(name)
		fields[flagName] = append(fields[flagName], fv)
		if len(fields[flagName]) > 1 {
			if fv.Type() != fields[flagName][0].Type() {
				return fmt.Errorf("configuration variable %s%s has two types: %s and %s", EnvPrefix, name, fv.Type(), fields[flagName][0].Type())
			}
			continue
		}
		usage := f.Tag.Get("help")
		switch p := fv.Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, flagName, *p, usage)
		case *int:
			fs.IntVar(p, flagName, *p, usage)
		case *int64:
			fs.Int64Var(p, flagName, *p, usage)
		case *bool:
			fs.BoolVar(p, flagName, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, flagName, *p, usage)
		case *[]string:
			fs.Func(flagName, fmt.Sprintf("%s (comma-separated; default %q)", usage, strings.Join(*p, ",")), func(s string) error {
				*p = splitList(s)
				return nil
			})
		case encoding.TextUnmarshaler:
			fs.TextVar(p, flagName, p.(encoding.TextMarshaler), usage)
		default:
			return fmt.Errorf("configuration field %s: no flag for type %s", f.Name, f.Type)
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// LogConfig logs cfg once at start, with fields tagged `secret:"true"`
// masked. A variable read by several services is logged once. A deprecated
// variable name in use is warned of.
func LogConfig(log *slog.Logger, cfg any) {
	var attrs []any
	v := reflect.Indirect(reflect.ValueOf(cfg))
	collect(v, &attrs, map[string]bool{})
	log.Info("configuration", attrs...)
	warnRenamed(log, v.Type())
}

func collect(v reflect.Value, attrs *[]any, seen map[string]bool) {
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Tag.Get("env")
		if name == "" {
			if f.Type.Kind() == reflect.Struct {
				collect(fv, attrs, seen)
			}
			continue
		}
		key := strings.ToLower(name)
		if seen[key] {
			continue
		}
		seen[key] = true
		if f.Tag.Get("secret") == "true" {
			if !fv.IsZero() {
				*attrs = append(*attrs, key, "***")
			}
			continue
		}
		*attrs = append(*attrs, key, redactUserinfo(fmt.Sprint(fv.Interface())))
	}
}

// redactUserinfo masks the credentials of URLs in a value (a NATS URL may
// carry a user and password; several may be comma-separated).
func redactUserinfo(v string) string {
	if !strings.Contains(v, "@") {
		return v
	}
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = bus.RedactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}
