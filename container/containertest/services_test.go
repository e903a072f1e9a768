package containertest_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/berthlabs/berth/container/containertest"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Redis from the Debian-built image, with go-redis: once through the
// sandbox's namespace (no host port), once through an endpoint.
func TestRedis(t *testing.T) {
	needRoot(t)
	image := debianImage(t, "redis")
	start := time.Now()
	s := containertest.Run(t, image, containertest.WaitFor(containertest.ForListeningPort("6379")))
	t.Logf("redis ready in %v", time.Since(start))
	ctx := context.Background()

	direct := redis.NewClient(&redis.Options{
		Addr:   "redis:6379",
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) { return s.Dial(ctx, network, addr) },
	})
	defer direct.Close()
	if err := direct.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		t.Fatal(err)
	}
	viaHost := redis.NewClient(&redis.Options{Addr: s.Endpoint(6379)})
	defer viaHost.Close()
	got, err := viaHost.Get(ctx, "greeting").Result()
	if err != nil || got != "hello" {
		t.Fatalf("GET greeting: %q, %v", got, err)
	}
	if n, err := viaHost.Incr(ctx, "counter").Result(); err != nil || n != 1 {
		t.Fatalf("INCR: %d, %v", n, err)
	}
	// The image's HEALTHCHECK (redis-cli ping) passes too.
	if err := s.WaitFor(ctx, containertest.ForHealthcheck().WithTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// Postgres from the Debian-built image, with pgx.
func TestPostgres(t *testing.T) {
	needRoot(t)
	image := debianImage(t, "postgres")
	start := time.Now()
	s := containertest.Run(t, image, containertest.WaitFor(containertest.AllOf(
		containertest.ForListeningPort("5432"),
		containertest.ForLog("database system is ready to accept connections"))))
	t.Logf("postgres ready in %v", time.Since(start))
	t.Logf("postgres output:\n%s", s.Logs())
	ctx := context.Background()

	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", s.Endpoint(5432)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "create table t (id int primary key, name text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "insert into t values (1, 'one'), (2, 'two')"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "select count(*) from t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("count: %d, %v", n, err)
	}

	// Through the sandbox's namespace, without a host port.
	cfg, err := pgx.ParseConfig("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	// pgx resolves names itself, before DialFunc; an IP literal keeps it
	// from asking the host's resolver.
	cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) { return []string{host}, nil }
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) { return s.Dial(ctx, network, addr) }
	direct, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	var name string
	if err := direct.QueryRow(ctx, "select name from t where id = 2").Scan(&name); err != nil || name != "two" {
		t.Fatalf("select: %q, %v", name, err)
	}
}

// Two services on one network: a redis client sandbox reaches the redis
// sandbox by name.
func TestRedisByName(t *testing.T) {
	needRoot(t)
	image := debianImage(t, "redis")
	n := containertest.NewNetwork(t)
	containertest.Run(t, image, containertest.WithName("cache"), containertest.WithNetwork(n),
		containertest.WaitFor(containertest.ForListeningPort("6379")))
	c := containertest.Run(t, image, containertest.WithName("cli"), containertest.WithNetwork(n),
		containertest.WithEntrypoint("redis-cli", "-h", "cache", "ping"),
		containertest.WaitFor(containertest.ForExit()))
	if got := c.Logs(); got != "PONG\n" {
		t.Fatalf("redis-cli -h cache ping: %q", got)
	}
}
