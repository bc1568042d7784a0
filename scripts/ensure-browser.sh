#!/usr/bin/env bash
# Makes sure Chromium and ChromeDriver are installed for the browser tests of
# the web panel. Idempotent: does nothing when both are already there.
#
# Debian: packages chromium + chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver).
# Ubuntu: apt's chromium-browser / chromium-chromedriver are transitional
# packages that install the snap, which needs snapd running; we try apt and
# report what happened rather than guess further.
#
# Exit status: 0 when both binaries are found afterwards, 1 otherwise.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The first of the given commands that exists, or nothing.
first_of() {
    local c
    for c in "$@"; do
        if have "$c"; then
            command -v "$c"
            return
        fi
    done
}

find_browser() { first_of chromium chromium-browser google-chrome; }
find_driver() { first_of chromedriver chromium.chromedriver; }

install_browser() {
    # Debian's names first (they are what CI and the dev machines run); Ubuntu's
    # apt has no `chromium` package, only the snap-backed transitional ones.
    if apt_install chromium chromium-driver; then
        return
    fi
    warn "chromium/chromium-driver not installable; trying Ubuntu's package names"
    apt_install chromium-browser chromium-chromedriver
}

main() {
    local browser driver
    browser=$(find_browser)
    driver=$(find_driver)
    if [[ -z $browser || -z $driver ]]; then
        info "installing Chromium and ChromeDriver"
        install_browser || warn "apt could not install the browser packages"
        browser=$(find_browser)
        driver=$(find_driver)
    fi
    if [[ -z $browser || -z $driver ]]; then
        die "Chromium (${browser:-missing}) or ChromeDriver (${driver:-missing}) is not available; install them by hand (on Ubuntu via snap: snap install chromium)"
    fi
    # Chinese text (a Hong Kong product's) renders as empty boxes in the screenshots without
    # a CJK font; Debian's Noto CJK covers Traditional Chinese.
    if have fc-list && ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then
        info "installing a CJK font for the screenshots"
        apt_install fonts-noto-cjk || warn "fonts-noto-cjk could not be installed: Chinese text renders as boxes"
    elif ! have fc-list; then
        apt_install fontconfig fonts-noto-cjk || warn "fonts-noto-cjk could not be installed: Chinese text renders as boxes"
    fi
    info "browser ready"
    note "$browser: $("$browser" --version 2>/dev/null || echo 'version unknown')"
    note "$driver: $("$driver" --version 2>/dev/null || echo 'version unknown')"
}

main "$@"
