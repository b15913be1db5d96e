package main

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/pod-shim/pod-shim/pkg/config"
)

// streamTLSConfig loads the stream server's certificate when one is set.
func streamTLSConfig(c config.StreamServer) (*tls.Config, error) {
	if c.TLSCert == "" && c.TLSKey == "" {
		return nil, nil
	}
	if c.TLSCert == "" || c.TLSKey == "" {
		return nil, errors.New("stream_server: tls_cert and tls_key go together")
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("stream_server TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
