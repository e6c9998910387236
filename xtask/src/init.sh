#!/bin/busybox sh
# /init of the rmemring test VMs; xtask/src/initramfs.rs writes it with the
# busybox, the driver, the guest binaries and /etc/rmemring/{config,command}.
#
# Run mode (/etc/rmemring/command exists): load the driver unless told not
# to, run the command with `sh -c`, report its status behind a marker, unload
# the driver, dump the kernel log behind markers and end the machine with
# `$END -f`: `reboot -f`, which makes QEMU (-no-reboot) exit, or, in a run of
# several boots (QEMU without -no-reboot), `poweroff -f`. In such a run every
# boot runs this again, and the command of each boot but the last resets the
# machine itself (`reboot -f`, a panic) instead of exiting. Shell mode: an
# interactive shell on the console.

/bin/busybox --install -s /bin
export PATH=/bin HOME=/root TERM=linux
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tmpfs tmpfs /tmp
mkdir -p /root
# MARK, LOAD, PARAMS, DEBUG_KERNEL and END (reboot or poweroff).
. /etc/rmemring/config
export RMEMRING_DEBUG_KERNEL="$DEBUG_KERNEL"

finish() {
    echo "$MARK:dmesg"
    dmesg
    echo "$MARK:end"
    "$END" -f
}

if [ "$LOAD" = 1 ]; then
    # shellcheck disable=SC2086 # PARAMS is a list of words.
    insmod /lib/modules/rmemring.ko $PARAMS
    status=$?
    if [ $status != 0 ]; then
        echo "$MARK:insmod-failed=$status"
        finish
    fi
fi

if [ ! -f /etc/rmemring/command ]; then
    echo
    echo "rmemring VM shell. Leave with 'reboot -f' (or exit), or kill QEMU with Ctrl-A X."
    setsid cttyhack sh
    reboot -f
fi

echo "$MARK:begin"
sh -c "$(cat /etc/rmemring/command)"
status=$?
echo "$MARK:status=$status"
if [ "$LOAD" = 1 ] && grep -q '^rmemring ' /proc/modules; then
    rmmod rmemring || echo "$MARK:rmmod-failed=$?"
fi
finish
