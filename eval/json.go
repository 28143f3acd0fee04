package eval

import (
	"bytes"
	"encoding/json"

	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

// JSONDerivation is a derivation as `hephc eval --json` shows it. Inputs
// are given as store paths; attr and pos say where it is written.
type JSONDerivation struct {
	Hash       store.DrvHash     `json:"hash"`
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	System     string            `json:"system"`
	Builder    string            `json:"builder"`
	Args       []string          `json:"args"`
	Env        map[string]string `json:"env"`
	Inputs     map[string]string `json:"inputs"`
	Attrs      map[string]any    `json:"attrs"`
	OutputHash string            `json:"outputHash,omitempty"`
	Meta       Meta              `json:"meta"`
	Attr       string            `json:"attr"`
	Pos        string            `json:"pos,omitempty"`
}

// JSONGraph is the document `hephc eval --json` prints: roots by CUE path
// and derivations by store path, every map sorted by key.
type JSONGraph struct {
	Roots       map[string]string          `json:"roots"`
	Derivations map[string]*JSONDerivation `json:"derivations"`
}

// JSON returns g as a JSONGraph; pos renders a position (e.g. relative to
// the working directory).
func (g *Graph) JSON(pos func(srcpos.Pos) string) *JSONGraph {
	out := &JSONGraph{Roots: map[string]string{}, Derivations: map[string]*JSONDerivation{}}
	for attr, h := range g.Roots {
		out.Roots[attr] = g.Nodes[h].Path().String()
	}
	for _, n := range g.Nodes {
		out.Derivations[n.Path().String()] = g.jsonNode(n, pos)
	}
	return out
}

func (g *Graph) jsonNode(n *Node, pos func(srcpos.Pos) string) *JSONDerivation {
	d := n.Drv
	j := &JSONDerivation{
		Hash: n.Hash, Name: d.Name, Version: d.Version, System: d.System,
		Builder: d.Builder, Args: d.Args, Env: d.Env, Attrs: d.Attrs,
		OutputHash: d.OutputHash, Meta: n.Meta, Attr: n.Attr,
		Inputs: map[string]string{},
	}
	for name, h := range d.Inputs {
		j.Inputs[name] = g.Nodes[h].Path().String()
	}
	if n.Pos.IsValid() && pos != nil {
		j.Pos = pos(n.Pos)
	}
	return j
}

// MarshalIndent encodes v as indented JSON without HTML escaping, ending
// in a newline.
func MarshalIndent(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
