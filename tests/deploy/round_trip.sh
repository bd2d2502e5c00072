#!/bin/sh
# Inside a deploy test's container, against a running production control plane (with
# IRONCLAW_API_TOKEN set): create an agent and wire it to init's "console" conversation,
# each through the gateway with an approval, then make a message round trip and verify
# the audit chain.
set -eu
for _ in $(seq 120); do ironctl status > /dev/null 2>&1 && break; sleep 1; done
ironctl status
ironctl agent create helper --folder helper --provider mock --model mock --approve
MG=$(ironctl --json registry messaging-groups | python3 -c 'import json, sys
groups = json.load(sys.stdin)["messaging_groups"]
print([g["id"] for g in groups if g["platform_id"] == "console"][0])')
ironctl --json change submit --kind wiring --group helper --payload \
    "{\"wiring\": \"helper-console\", \"messaging_group\": \"$MG\", \"engage\": \"pattern\", \"pattern\": \".\"}" \
    > /tmp/wiring.json
ironctl change approve "$(python3 -c 'import json; print(json.load(open("/tmp/wiring.json"))["id"])')"
echo "hello from the container" | ironctl chat --group helper --poll --reply-timeout 180 \
    | tee /tmp/chat.log
grep -q "echo: hello from the container" /tmp/chat.log
ironctl audit verify
