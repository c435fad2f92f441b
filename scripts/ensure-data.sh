#!/usr/bin/env bash
# Make sure an in-distribution dataset is present (used by `make book`).
# Order: already located by moon -> Debian's package (when apt-get is usable) -> torchvision download.
set -uo pipefail
name="${1:-fashion_mnist}"

if python -m moon data "$name" --no-download >/dev/null 2>&1; then
  python -m moon data "$name" --no-download
  exit 0
fi

if [ "$name" = fashion_mnist ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && SUDO="sudo -n"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "Fashion-MNIST not found: installing Debian's dataset-fashion-mnist"
    $SUDO apt-get update -qq || true
    if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist; then
      python -m moon data "$name" --no-download && exit 0
    fi
  fi
fi

echo "Trying torchvision's download (needs a network) ..."
if python -m moon data "$name" --download; then
  exit 0
fi
cat >&2 <<MSG

Could not find or fetch the dataset '$name'. Ways to get it:
  * Debian/Ubuntu:  sudo apt-get install dataset-fashion-mnist   (files in /usr/share/datasets/fashion-mnist)
  * with a network: python -m moon data $name --download          (torchvision, into data/ or \$MOON_DATA)
  * by hand:        put the four IDX .gz files in data/fashion-mnist/ (or \$MOON_DATA/fashion-mnist/)
MSG
exit 1
