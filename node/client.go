package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redraft/redraft/fsm"
)

// Client talks to any node's admin HTTP API; the node forwards changes to the leader.
type Client struct {
	// Addr is the node's admin address, HOST:PORT.
	Addr  string
	base  string // http://HOST:PORT or https://HOST:PORT
	token string
	hc    *http.Client
	// guess: the address gave no scheme, so http was guessed; before the token is first
	// sent, a request without it finds out whether the port speaks HTTPS (once).
	guess sync.Once
	plain bool
}

// ClientOptions say how a Client reaches a protected admin API.
type ClientOptions struct {
	// Token is the admin token, sent as a bearer token ("": none).
	Token string
	// CAFile holds PEM certificates the admin port's certificate must chain to; setting it
	// means HTTPS. Without it, HTTPS (an https:// address) trusts the system's CAs.
	CAFile string
}

// NewClient returns a client for the admin API at addr (HOST:PORT, http://HOST:PORT or
// https://HOST:PORT), without a token.
func NewClient(addr string) *Client {
	c, _ := NewClientWith(addr, ClientOptions{})
	return c
}

// NewClientWith returns a client for the admin API at addr with a token and TLS settings.
func NewClientWith(addr string, o ClientOptions) (*Client, error) {
	scheme := "http"
	if strings.HasPrefix(addr, "https://") || o.CAFile != "" {
		scheme = "https"
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.CAFile != "" {
		pool, err := loadCAPool(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("admin CA: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	explicit := strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") || o.CAFile != ""
	addr = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://"), "/")
	// A redirect is answered as an error, not followed: the API answers none of its own, and
	// Go's mux redirects a path with "." or ".." to another one (DELETE /groups/dc1/.. to
	// /groups), which a followed redirect turned into a GET that succeeded, and the CLI said
	// the group was removed.
	return &Client{Addr: addr, base: scheme + "://" + addr, token: o.Token, plain: !explicit,
		hc: &http.Client{Timeout: 30 * time.Second, Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

// withoutUser is addr without a user and password given in it.
func withoutUser(addr string) string {
	if i := strings.LastIndex(addr, "@"); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

// shown is addr as the client's messages print it: without a password given in it
// (--admin http://user:password@host:port, for a reverse proxy that asks for one).
func shown(addr string) string {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		scheme, rest = "", addr
	} else {
		scheme += "://"
	}
	if host := withoutUser(rest); host != rest {
		return scheme + "xxxxx@" + host
	}
	return addr
}

// checkScheme, for an address given without a scheme, asks the port without the token
// (GET /healthz) before the token is first sent: a port that speaks HTTPS answers a plain
// request with 400, and the client then uses HTTPS (verified against the system's CAs), so
// that the token never crosses the network in clear to a node that serves TLS.
func (c *Client) checkScheme(ctx context.Context) {
	c.guess.Do(func() {
		if !c.plain || c.token == "" {
			return
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/healthz", nil)
		if err != nil {
			return
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusBadRequest && strings.Contains(string(data), "HTTP request to an HTTPS server") {
			c.base = "https://" + c.Addr
		}
	})
}

// APIError is an error answered by the admin API.
type APIError struct {
	Status int
	Code   string
	Msg    string
}

// Error implements error.
func (e *APIError) Error() string { return e.Msg }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	c.checkScheme(ctx)
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
			return fmt.Errorf("the admin API at %s speaks plain HTTP: give --admin without https:// and without --admin-ca", shown(c.Addr))
		}
		return fmt.Errorf("cannot reach the admin API at %s (is a node running there? set --admin or REDRAFT_ADMIN): %w", shown(c.base), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e rpcError
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &APIError{Status: resp.StatusCode, Code: e.Code, Msg: e.Error}
		}
		if strings.Contains(string(data), "HTTP request to an HTTPS server") {
			return &APIError{Status: resp.StatusCode, Msg: fmt.Sprintf("the admin API at %s speaks HTTPS: give --admin https://%s (and --admin-ca CA.pem unless its certificate is from a CA this system trusts)", shown(c.Addr), withoutUser(c.Addr))}
		}
		return &APIError{Status: resp.StatusCode, Msg: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// Failover runs a planned switchover of a group's master and returns how it ended.
func (c *Client) Failover(ctx context.Context, dc, id string, req FailoverRequest) (FailoverReply, error) {
	var out FailoverReply
	err := c.do(ctx, http.MethodPost, "/groups/"+url.PathEscape(dc)+"/"+url.PathEscape(id)+"/failover", req, &out)
	return out, err
}

// Status returns the cluster status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, "/status", nil, &s)
}

// Health returns the node's /healthz answer; err is set when it is not healthy.
func (c *Client) Health(ctx context.Context) (map[string]any, error) {
	var out map[string]any
	return out, c.do(ctx, http.MethodGet, "/healthz", nil, &out)
}

// RemoveNode takes a node out of the cluster.
func (c *Client) RemoveNode(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/nodes/"+url.PathEscape(id), nil, nil)
}

// AddGroup creates a group in a DC.
func (c *Client) AddGroup(ctx context.Context, dc string, g fsm.Group) error {
	return c.do(ctx, http.MethodPost, "/groups", fsm.AddGroup{DC: dc, Group: g}, nil)
}

// UpdateGroup replaces group id's master and replicas, and its password when u.Password is
// set (nil keeps it).
func (c *Client) UpdateGroup(ctx context.Context, dc, id string, u GroupUpdate) error {
	return c.do(ctx, http.MethodPut, "/groups/"+url.PathEscape(dc)+"/"+url.PathEscape(id), u, nil)
}

// RemoveGroup removes a group that serves no slot.
func (c *Client) RemoveGroup(ctx context.Context, dc, id string) error {
	return c.do(ctx, http.MethodDelete, "/groups/"+url.PathEscape(dc)+"/"+url.PathEscape(id), nil, nil)
}

// AssignSlots makes a group serve slot ranges ("0-8191").
func (c *Client) AssignSlots(ctx context.Context, req AssignRequest) error {
	return c.do(ctx, http.MethodPost, "/slots/assign", req, nil)
}

// Slots returns, per DC and group, the slot ranges ("" dc for all).
func (c *Client) Slots(ctx context.Context, dc string) (SlotsReply, error) {
	var out SlotsReply
	return out, c.do(ctx, http.MethodGet, "/slots?dc="+url.QueryEscape(dc), nil, &out)
}

// ConfigItem is one cluster setting.
type ConfigItem struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Help  string `json:"help"`
}

// Config returns the cluster settings.
func (c *Client) Config(ctx context.Context) ([]ConfigItem, error) {
	var out []ConfigItem
	return out, c.do(ctx, http.MethodGet, "/config", nil, &out)
}

// SetConfig changes a cluster setting.
func (c *Client) SetConfig(ctx context.Context, key, value string) error {
	return c.do(ctx, http.MethodPut, "/config/"+url.PathEscape(key), SettingRequest{Value: value}, nil)
}
