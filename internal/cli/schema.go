package cli

import (
	"github.com/spf13/cobra"

	"github.com/kpf-dev/kpf/schema"
)

const schemaLong = `Print the JSON Schema of forwards.yaml (format version 1) that this kpf
checks files against. Editors use it for completion and checking; see
docs/config.md ("Editor support"). Its $id is
` + schema.ID + `.`

const schemaExample = `  kpf schema > .kpf.schema.json
  # then, as the first line of forwards.yaml:
  # yaml-language-server: $schema=.kpf.schema.json`

func newSchemaCmd(env Env) *cobra.Command {
	return &cobra.Command{
		Use:     "schema",
		Short:   "Print the JSON Schema of forwards.yaml",
		Long:    schemaLong,
		Example: forName(env, schemaExample),
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := env.Stdout.Write(schema.JSON)
			return err
		},
	}
}
