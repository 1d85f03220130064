package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// minRSABits is the smallest RSA key accepted.
const minRSABits = 2048

// loadPublicKeys reads the PEM blocks of a public key file: PUBLIC KEY
// (PKIX: RSA, ECDSA or Ed25519), RSA PUBLIC KEY (PKCS #1) or CERTIFICATE
// (the certificate's key; its validity is not checked).
func loadPublicKeys(path string) ([]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public_key_file: %w", err)
	}
	var keys []any
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var key any
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("public_key_file %s: PEM block %d is %q (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", path, n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("public_key_file %s: PEM block %d: %w", path, n, err)
		}
		if err := checkKey(key); err != nil {
			return nil, fmt.Errorf("public_key_file %s: PEM block %d: %w", path, n, err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("public_key_file %s: no PEM public key found", path)
	}
	return keys, nil
}

// checkKey refuses public keys of unsupported types and weak RSA keys.
func checkKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits (at least %d are needed)", k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return errors.New("unsupported elliptic curve")
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T", key)
	}
	return nil
}

// keyFits reports whether a public key can verify tokens of alg.
func keyFits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}
