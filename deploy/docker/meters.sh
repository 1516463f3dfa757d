#!/bin/sh
# Simulated Tasmota (SML script) meters for the compose street (compose.yaml's `meters` service): every 10 s
# each household's meter publishes its import/export counters (kWh, three decimals, integrated
# from a fixed power, to the mWh) and its power. house-1 exports (PV), the others import.
set -eu
BROKER=${BROKER:-172.28.0.2}
EVERY=10
set -- "house-1:-1500" "house-2:800" "house-3:600"
# Counters in mWh, per household: import and export.
i1=0; e1=0; i2=0; e2=0; i3=0; e3=0
kwh() { printf '%d.%03d' $(($1 / 1000000)) $(($1 / 1000 % 1000)); }
while true; do
  n=1
  for spec in "$@"; do
    house=${spec%%:*}; power=${spec#*:}
    eval "imp=\$i$n; exp=\$e$n"
    step=$((power * EVERY * 1000 / 3600))
    if [ "$power" -ge 0 ]; then imp=$((imp + step)); else exp=$((exp - step)); fi
    eval "i$n=$imp; e$n=$exp"
    payload="{\"Time\":\"t\",\"SML\":{\"Total_in\":$(kwh "$imp"),\"Total_out\":$(kwh "$exp"),\"Power_curr\":$power}}"
    # A broker not up yet (or restarting) loses a reading, not the meter.
    mosquitto_pub -h "$BROKER" -t "tele/$house/SENSOR" -m "$payload" || echo "meters: $house: not published"
    n=$((n + 1))
  done
  sleep "$EVERY"
done
