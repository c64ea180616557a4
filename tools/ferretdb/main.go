// Command ferretdb runs embeddable FerretDB v1 (MongoDB wire protocol) for tests.
//
// It exists because `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` builds a
// binary that panics at start: its build/version package expects generated version.txt files
// that are not in the module zip. The embeddable package skips that check when the main module
// is not FerretDB itself, so this wrapper is all we need.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}

func run() error {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	sqliteDir := flag.String("sqlite-dir", "", "directory of the SQLite databases (created if missing)")
	postgresqlURL := flag.String("postgresql-url", "", "PostgreSQL URL; selects the PostgreSQL handler instead of SQLite")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	printVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()

	if *printVersion {
		// The marker lets scripts tell this wrapper from the official binary, whose flags differ.
		fmt.Println("ferretdb-wrapper FerretDB", ferretDBVersion())
		return nil
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	config := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listenAddr},
		Logger:   logger,
	}

	switch {
	case *postgresqlURL != "" && *sqliteDir != "":
		return errors.New("give either --sqlite-dir or --postgresql-url, not both")
	case *postgresqlURL != "":
		config.Handler = "postgresql"
		config.PostgreSQLURL = *postgresqlURL
	case *sqliteDir != "":
		dir, err := filepath.Abs(*sqliteDir)
		if err != nil {
			return err
		}
		// FerretDB refuses a directory that does not exist.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		config.Handler = "sqlite"
		// url.URL escapes odd characters; FerretDB requires the trailing slash.
		config.SQLiteURL = (&url.URL{Scheme: "file", Path: filepath.ToSlash(dir) + "/"}).String()
	default:
		return errors.New("give --sqlite-dir DIR or --postgresql-url URL")
	}

	f, err := ferretdb.New(config)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Info("listening", "addr", *listenAddr, "handler", config.Handler)
	// Run returns after ctx is cancelled and every connection and the backend are closed.
	return f.Run(ctx)
}

// ferretDBVersion reports the version of the FerretDB module linked into this binary.
func ferretDBVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/FerretDB/FerretDB" {
				return dep.Version
			}
		}
	}
	return "unknown"
}
