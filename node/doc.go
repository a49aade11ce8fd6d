// Package node runs one redraft node: config, Raft wiring, the peer-port multiplexer, membership, proposal forwarding and the admin HTTP API.
package node
