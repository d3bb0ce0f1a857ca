package stagings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// DownloadsBucket is the key-value bucket where the stager keeps its
// download links (token -> link with the user it was issued to).
const DownloadsBucket = "STAGING_DOWNLOADS"

// DownloadOwner returns the user download token was issued to; found is
// false for a token unknown to the bucket (or a bucket not created yet).
func (c *Client) DownloadOwner(ctx context.Context, token string) (username string, found bool, err error) {
	if err := c.connected("look up download link"); err != nil {
		return "", false, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	kv, err := c.js.KeyValue(ctx, DownloadsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, unavailable("look up download link", err)
	}
	e, err := kv.Get(ctx, token)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return "", false, nil
	}
	if err != nil {
		return "", false, unavailable("look up download link", err)
	}
	var link struct {
		Username string `json:"username"`
	}
	if err := json.Unmarshal(e.Value(), &link); err != nil {
		return "", false, fmt.Errorf("decode download link: %w", err)
	}
	return link.Username, true, nil
}
