// Package examples holds the lab plan, examples/lab.yaml, which encodes every
// worked example of the product's source material. It is embedded so that
// callctl runs on it with no file at all, and so tests route over it.
package examples

import _ "embed"

// Lab is the content of lab.yaml.
//
//go:embed lab.yaml
var Lab []byte

// LabName is how problems in the embedded plan are located.
const LabName = "examples/lab.yaml"
