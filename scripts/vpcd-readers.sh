#!/usr/bin/env bash
# Write a pcscd reader configuration with four vsmartcard vpcd readers into DIR and print the
# directory to give to `pcscd --foreground -c`:
#   "Virtual PCD 00 00" (TCP 35963), "Virtual PCD 00 01" (35964)   Debian's /etc/reader.conf.d/vpcd
#   "Second PCD 00 00"  (TCP 35965), "Second PCD 00 01"  (35966)   for the renewal queue's tests (issue 15)
# A second vpcd entry needs a driver file of its own: the driver keeps its sockets in static state,
# so two entries on the same libifdvpcd.so both end up on the second entry's ports (vpcd 0.8,
# Debian 12). A copy at another path is loaded as a separate library. It also needs its own
# FRIENDLYNAME: with the same name pcscd gives two readers the same name.
set -euo pipefail
dir=${1:?usage: vpcd-readers.sh DIR}
driver=$(sed -n 's/^[[:space:]]*LIBPATH[[:space:]]*//p' /etc/reader.conf.d/vpcd 2>/dev/null | head -n1)
driver=${driver:-/usr/lib/pcsc/drivers/serial/libifdvpcd.so}
mkdir -p "$dir/reader.conf.d"
cp "$driver" "$dir/libifdvpcd-second.so"
cat > "$dir/reader.conf.d/vpcd" <<CONF
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      $driver
CHANNELID    0x8C7B

FRIENDLYNAME "Second PCD"
DEVICENAME   /dev/null:0x8C7D
LIBPATH      $dir/libifdvpcd-second.so
CHANNELID    0x8C7D
CONF
echo "$dir/reader.conf.d"
