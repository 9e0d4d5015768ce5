package main

import (
	"fmt"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// newLogger builds the zap logger from --log.level and --log.format. Logs go
// to stderr so scan and audit output stays clean on stdout.
func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log.level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	if format == "console" {
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths = []string{"stderr"}
	cfg.ErrorOutputPaths = []string{"stderr"}
	log, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return log, nil
}

// routeKlog sends client-go's klog output (reflector warnings and the
// like) through our logger, so it honours --log.format and --log.level.
func routeKlog(log *zap.Logger) {
	klog.SetLogger(logr.FromSlogHandler(zapslog.NewHandler(log.Named("client-go").Core())))
}
