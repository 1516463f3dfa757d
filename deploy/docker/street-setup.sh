#!/bin/sh
# Sets up the compose street once (compose.yaml's `setup` service): a community, a relay and
# bootstrap node, and three households, each admitted, its node.toml pointing at the street's
# mosquitto and at the relay. Idempotent: a street already set up is left as it is.
#
# Outside compose (tests): PEERWATT=path/to/peerwatt STREET=/tmp/street sh street-setup.sh
set -eu
PEERWATT=${PEERWATT:-peerwatt}
STREET=${STREET:-/street}
BROKER=${BROKER:-172.28.0.2}
RELAY_IP=${RELAY_IP:-172.28.0.10}

if [ -f "$STREET/.ready" ]; then
  echo "street-setup: $STREET is set up already"
  exit 0
fi
mkdir -p "$STREET"
"$PEERWATT" community init --dir "$STREET/admin" --name "Compose Street"

id_of() {
  "$PEERWATT" init --data-dir "$STREET/$1" --name "$1" | sed -n 's/^ *public id: *//p'
}

admit() {
  "$PEERWATT" community admit --dir "$STREET/admin" --node "$2" --name "$1" --zone feeder-1 \
    --out "$STREET/$1/membership.cert"
  cp "$STREET/admin/community.toml" "$STREET/$1/community.toml"
}

relay_id=$(id_of relay)
admit relay "$relay_id"
cat >> "$STREET/relay/node.toml" <<TOML

[community]
file = "community.toml"
certificate = "membership.cert"

[network]
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
TOML

for house in house-1 house-2 house-3; do
  id=$(id_of "$house")
  admit "$house" "$id"
  cat >> "$STREET/$house/node.toml" <<TOML

[meter]
host = "$BROKER"
port = 1883

[meter.grid]
format = "tasmota"
topics = ["tele/$house/SENSOR"]

[community]
file = "community.toml"
certificate = "membership.cert"

[network]
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
bootstrap = ["/ip4/$RELAY_IP/tcp/4001/p2p/$relay_id"]
TOML
done
touch "$STREET/.ready"
echo "street-setup: community, relay $relay_id and three households in $STREET"
