#!/bin/sh
# An exec credential plugin whose user is not logged in, as kubelogin or
# aws-iam-authenticator are when a session has expired.
echo "kpf-e2e: no valid session; run kpf-e2e-login" >&2
exit 1
