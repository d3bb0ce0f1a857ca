package contract

import "embed"

// Schemas holds the JSON Schema of each message: command.schema.json,
// event.schema.json and download.schema.json.
//
//go:embed schema/*.schema.json
var Schemas embed.FS
