#!/bin/sh
# Writes kpf's shell completion scripts into completions/, for the release
# archives (GoReleaser runs it before it builds). The scripts come from the
# kpf being released, built for this machine.
set -eu
rm -rf completions
mkdir -p completions
for sh in bash zsh fish powershell; do
  go run ./cmd/kpf completion "$sh" > "completions/kpf.$sh"
done
# kubectl (1.26 and later) completes `kubectl kpf ...` through an executable
# named kubectl_complete-kpf on PATH; it hands the words to kpf __complete.
cat > completions/kubectl_complete-kpf <<'SH'
#!/bin/sh
exec kubectl-kpf __complete "$@"
SH
chmod +x completions/kubectl_complete-kpf
