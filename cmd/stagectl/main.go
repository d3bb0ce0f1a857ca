// Command stagectl is the command-line client of the skao-staging service:
// it submits staging requests and batch jobs, follows them with live
// progress bars over the server's event streams, lists the audit history,
// downloads direct_download links with resume, and cancels requests where
// the server supports it. It uses only the documented REST API and SSE
// streams.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes, documented in the root help; scripts depend on them.
const (
	exitOK          = 0
	exitFailed      = 1 // a request failed or was rejected
	exitUsage       = 2
	exitUnreachable = 3 // the server is unreachable or answered 5xx
	exitInterrupted = 130
)

const defaultServer = "http://localhost:8080"

// version is set by the release build (make release).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// app is one invocation: its streams, environment and global flags.
type app struct {
	stdin  io.Reader
	stdout *countingWriter
	stderr io.Writer
	getenv func(string) string
	// tty: stderr is a terminal, so progress is drawn as animated bars.
	tty bool

	server    string
	token     string
	tokenFile string
	json      bool

	c *client
}

// run executes one command line and returns the process's exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: &countingWriter{w: stdout}, stderr: stderr, getenv: getenv, tty: isTerminal(stderr) && getenv("TERM") != "dumb"}
	root := a.rootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return a.fail(cmd, err)
}

// isTerminal reports whether w is a terminal bars can be drawn on: one
// with a size (a pseudo-terminal without one, as script(1) makes, would
// show nothing).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false
	}
	width, height, err := term.GetSize(int(f.Fd()))
	return err == nil && width > 0 && height > 0
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "stagectl",
		Short: "Stage SKA data into your user area, your Jupyter server or your own machine",
		Long: `stagectl is the command-line client of the skao-staging service. It asks the
service to copy, link or serve data from the site's storage, follows the
requests live with progress bars, and reads their history.

A first session:

  stagectl methods                                    # what this site allows
  stagectl stage local_copy sample/hello.txt hello.txt --user alice --wait
  stagectl list --user alice                          # the history
  stagectl stage direct_download sample/hello.txt hello.txt --user alice --wait
  stagectl download ID                                # fetch the link

Server and credentials:
  --server URL or STAGING_URL        the gateway (default ` + defaultServer + `)
  --token T, STAGING_TOKEN, or
  --token-file F, STAGING_TOKEN_FILE a bearer token, when the server requires one

Output:
  On a terminal, progress is drawn as animated bars on stderr. Piped (CI, a
  notebook's !stagectl) it is one line per state change instead. With --json
  every command prints exactly one JSON document on stdout and nothing else;
  messages and progress go to stderr. A failure's document is
  {"error": {"code": ..., "detail": ...}}: the server's error code, or one of
  stagectl's own: unreachable, http_<status> (an answer that is not the
  API's), malformed_response, cancel_unsupported, checksum_mismatch, failed.

Exit codes (with several requests, the worst one decides):
  0  every request succeeded (or, for status, exists and has not failed)
  1  a request failed or was rejected, or the server refused the command;
     the error code is printed (for example source_not_found)
  2  usage error: unknown command or flag, bad arguments or input file
  3  the server is unreachable or answered with a server error (5xx)
  130 interrupted (Ctrl-C)`,
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if p := cmd.Parent(); cmd.Name() == "completion" || (p != nil && p.Name() == "completion") {
				return nil // prints a script: no server, no token
			}
			return a.connect(cmd)
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&a.server, "server", defaultServer, "base URL of the staging gateway (env STAGING_URL)")
	f.StringVar(&a.token, "token", "", "bearer token for the gateway (env STAGING_TOKEN)")
	f.StringVar(&a.tokenFile, "token-file", "", "read the bearer token from this file (env STAGING_TOKEN_FILE)")
	f.BoolVar(&a.json, "json", false, "print machine-readable JSON on stdout and nothing else")
	// Before the completion command, which takes its output from root.
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })

	root.AddCommand(
		a.stageCommand(),
		a.statusCommand(),
		a.jobCommand(),
		a.watchCommand(),
		a.listCommand(),
		a.cancelCommand(),
		a.downloadCommand(),
		a.methodsCommand(),
	)
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Long = strings.TrimRight(c.Long, "\n") + `

Load the completions in the current shell, for example:

  source <(stagectl completion bash)
  stagectl completion zsh > "${fpath[1]}/_stagectl"
  stagectl completion fish | source`
		}
	}
	return root
}

// connect resolves the server and the token: a flag wins over its
// environment variable.
func (a *app) connect(cmd *cobra.Command) error {
	flags := cmd.Flags()
	if !flags.Changed("server") {
		if v := a.getenv("STAGING_URL"); v != "" {
			a.server = v
		}
	}
	if !flags.Changed("token") && !flags.Changed("token-file") {
		a.token = a.getenv("STAGING_TOKEN")
		if a.token == "" {
			a.tokenFile = a.getenv("STAGING_TOKEN_FILE")
		}
	}
	if flags.Changed("token") && flags.Changed("token-file") {
		return usagef("give --token or --token-file, not both")
	}
	if a.tokenFile != "" {
		data, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return usagef("token file: %v", err)
		}
		a.token = strings.TrimSpace(string(data))
		if a.token == "" {
			return usagef("token file %s is empty", a.tokenFile)
		}
	}
	c, err := newClient(a.server, a.token)
	if err != nil {
		return err
	}
	a.c = c
	return nil
}

// completeMethods completes a method name with the methods the server
// allows (shell completion runs no PersistentPreRunE: it connects itself).
func (a *app) completeMethods(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	if a.connect(cmd) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ms, err := a.c.methods(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return ms, cobra.ShellCompDirectiveNoFileComp
}

// usageError is a mistake in the command line or its input: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitError ends the command with a code once its output is written (the
// worst of several requests).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// failure is a failed request or a local failure (a file that cannot be
// written): exit 1, its message printed as is.
type failure struct{ msg string }

func (e failure) Error() string { return e.msg }

func failf(format string, args ...any) error { return failure{fmt.Sprintf(format, args...)} }

// exitCode says how err ends the process.
func exitCode(err error) int {
	var ee exitError
	var se *serverError
	var ue *unreachableError
	var fe failure
	var us usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &us):
		return exitUsage
	case errors.As(err, &ue):
		return exitUnreachable
	case errors.As(err, &se):
		if se.Status >= 500 {
			return exitUnreachable
		}
		return exitFailed
	case errors.As(err, &fe), errors.Is(err, errNoCancel):
		return exitFailed
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	default:
		// What cobra itself returns: unknown commands, wrong arguments.
		return exitUsage
	}
}

// worse returns the worse of two exit codes: unreachable over failed over
// success.
func worse(a, b int) int {
	rank := func(c int) int {
		switch c {
		case exitOK:
			return 0
		case exitFailed:
			return 1
		default:
			return 2
		}
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// fail reports err and returns its exit code. Server errors are shown as
// their stable code and detail; with --json and nothing printed yet, the
// error is also the JSON document on stdout.
func (a *app) fail(cmd *cobra.Command, err error) int {
	code := exitCode(err)
	var ee exitError
	if errors.As(err, &ee) {
		return code
	}
	if code == exitInterrupted {
		fmt.Fprintln(a.stderr, "stagectl: interrupted")
		return code
	}
	fmt.Fprintln(a.stderr, "stagectl: "+describe(err))
	if code == exitUsage {
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return code
	}
	if a.json && a.stdout.n == 0 {
		_ = writeJSON(a.stdout, map[string]any{"error": errorJSON(err)})
	}
	return code
}
