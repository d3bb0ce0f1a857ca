package service

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// natsAuth is the NATS credentials option of base: the user nkey of
// STAGING_NATS_NKEY_FILE or the user JWT and seed of
// STAGING_NATS_CREDS_FILE (at most one of the two), or none. The file is
// read and checked now, so that a wrong one fails the start naming the
// setting; nats.go reads it again for each handshake and keeps no seed in
// memory. No error carries the file's content.
func natsAuth(base Base) (nats.Option, error) {
	switch {
	case base.NATSNkeyFile != "" && base.NATSCredsFile != "":
		return nil, fmt.Errorf("configuration: %sNATS_NKEY_FILE and %sNATS_CREDS_FILE are both set; set one", EnvPrefix, EnvPrefix)
	case base.NATSNkeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(base.NATSNkeyFile)
		if err != nil {
			return nil, fmt.Errorf("configuration: %sNATS_NKEY_FILE %s: %w", EnvPrefix, base.NATSNkeyFile, err)
		}
		return opt, nil
	case base.NATSCredsFile != "":
		if err := checkCredsFile(base.NATSCredsFile); err != nil {
			return nil, fmt.Errorf("configuration: %sNATS_CREDS_FILE %s: %w", EnvPrefix, base.NATSCredsFile, err)
		}
		return nats.UserCredentials(base.NATSCredsFile), nil
	}
	return nil, nil
}

// checkCredsFile checks that file holds a user JWT and the user nkey seed
// it belongs to, as a .creds file does.
func checkCredsFile(file string) error {
	content, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	defer clear(content)
	kp, err := nkeys.ParseDecoratedUserNKey(content)
	if err != nil {
		return fmt.Errorf("no user nkey seed in it (%w)", err)
	}
	defer kp.Wipe()
	// Without the decoration a .creds file has, this is the whole file,
	// which does not decode.
	token, err := nkeys.ParseDecoratedJWT(content)
	if err != nil {
		return fmt.Errorf("no user JWT in it (%w)", err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return fmt.Errorf("no user JWT in it (%w)", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	if claims.Subject != pub {
		return errors.New("its seed is not that of the user of its JWT")
	}
	return nil
}

// credentialsHint says, for a server that refused the connection, which
// credentials were offered and how to offer others.
func credentialsHint(base Base) string {
	switch {
	case base.NATSNkeyFile != "":
		return fmt.Sprintf("the server refused the nkey of %sNATS_NKEY_FILE %s", EnvPrefix, base.NATSNkeyFile)
	case base.NATSCredsFile != "":
		return fmt.Sprintf("the server refused the credentials of %sNATS_CREDS_FILE %s", EnvPrefix, base.NATSCredsFile)
	case strings.Contains(base.NATSURL, "@"):
		return fmt.Sprintf("the server refused the user and password in %sNATS_URL", EnvPrefix)
	}
	return fmt.Sprintf("the server wants credentials: set %sNATS_NKEY_FILE (for the all-in-one's server, its <data dir>/nats-admin.nk) or %sNATS_CREDS_FILE, or a user and password in %sNATS_URL", EnvPrefix, EnvPrefix, EnvPrefix)
}
