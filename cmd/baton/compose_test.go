package main

import (
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/batonhq/baton/beat"
	"github.com/batonhq/baton/config"
)

// composeFile is the part of docker-compose.yml the test checks.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
	} `yaml:"services"`
}

// TestDockerCompose checks docker-compose.yml without Docker: it parses,
// every baton command it runs exists with the flags it passes, every
// environment variable of a baton service is one config reads, and files it
// mounts exist.
func TestDockerCompose(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	require.NoError(t, err)
	var cf composeFile
	require.NoError(t, yaml.Unmarshal(raw, &cf))
	for _, want := range []string{"redis", "worker", "dashboard", "beat", "research", "prometheus"} {
		require.Contains(t, cf.Services, want)
	}

	known := map[string]bool{}
	for _, v := range config.Vars {
		known[v.Name] = true
	}
	a := newApp(strings.NewReader(""), io.Discard, io.Discard)
	root := newRootCmd(a)
	baton := 0
	for name, svc := range cf.Services {
		for _, vol := range svc.Volumes {
			if src, _, ok := strings.Cut(vol, ":"); ok && strings.HasPrefix(src, "./") {
				_, err := os.Stat("../../" + src)
				require.NoError(t, err, "service %s mounts %s", name, src)
			}
		}
		if svc.Image != "baton:latest" {
			continue
		}
		baton++
		require.NotNil(t, svc.Build, "service %s builds the image", name)
		for env := range svc.Environment {
			require.True(t, known[env], "service %s sets %s, which config does not read (config.Vars)", name, env)
		}
		require.NotEmpty(t, svc.Command, "service %s has a command", name)
		cmd, rest, err := root.Find(svc.Command)
		require.NoError(t, err, "service %s: command %q", name, svc.Command)
		require.NotEqual(t, root, cmd, "service %s: %q is not a baton subcommand", name, svc.Command[0])
		require.Equal(t, svc.Command[0], cmd.Name())
		// Every --flag exists on the command (local, inherited or config).
		for i := 0; i < len(rest); i++ {
			arg := rest[i]
			if !strings.HasPrefix(arg, "--") {
				continue
			}
			flagName, _, hasValue := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
			f := cmd.Flags().Lookup(flagName)
			if f == nil {
				f = cmd.InheritedFlags().Lookup(flagName)
			}
			require.NotNil(t, f, "service %s: %s has no flag --%s", name, cmd.CommandPath(), flagName)
			if !hasValue && f.Value.Type() != "bool" {
				i++ // the value
				require.Less(t, i, len(rest), "service %s: --%s needs a value", name, flagName)
				require.NoError(t, f.Value.Set(rest[i]), "service %s: --%s %s", name, flagName, rest[i])
			}
		}
	}
	require.GreaterOrEqual(t, baton, 4)
	require.True(t, slices.Contains(cf.Services["redis"].Command, "--appendonly"), "redis runs with AOF")
	require.Equal(t, "redis://redis:6379/0", cf.Services["worker"].Environment["REDIS_URL"], "shared environment merged in")
	require.Equal(t, ":9090", cf.Services["worker"].Environment["BATON_METRICS_ADDR"])

	// The dashboard starts: on a non-loopback address baton dash needs basic
	// auth or --insecure-no-auth; without auth it is published on the
	// host's loopback only.
	dashSvc := cf.Services["dashboard"]
	addr := dashAddrDefault
	if i := slices.Index(dashSvc.Command, "--addr"); i >= 0 && i+1 < len(dashSvc.Command) {
		addr = dashSvc.Command[i+1]
	}
	host, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	ip := net.ParseIP(host)
	auth := dashSvc.Environment[envDashUser] != "" && dashSvc.Environment[envDashPassword] != ""
	insecure := slices.Contains(dashSvc.Command, "--insecure-no-auth")
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		require.True(t, auth || insecure, "baton dash --addr %s refuses to start without basic auth or --insecure-no-auth", addr)
	}
	if !auth {
		for _, p := range dashSvc.Ports {
			require.True(t, strings.HasPrefix(p, "127.0.0.1:"), "the dashboard runs without auth: publish it on 127.0.0.1 only, not %q", p)
		}
	}

	// The schedule beat mounts is valid.
	_, err = beat.Load("../../deploy/schedule.yaml")
	require.NoError(t, err)
}
