#!/usr/bin/env bash
# Bundle KaTeX into the site, so that its math renders offline: `npm pack` downloads the
# release tarball from the npm registry at build time (npm checks its integrity) and its
# dist/ (script, style sheet, auto-render, woff2 fonts) goes to docs/assets/katex/.
# Usage: tools/fetch_katex.sh VERSION DEST
set -euo pipefail
version=${1:?usage: fetch_katex.sh VERSION DEST}
dest=${2:?usage: fetch_katex.sh VERSION DEST}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "katex@$version" --silent >/dev/null)
tar -xzf "$work/katex-$version.tgz" -C "$work"
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/contrib" "$dest.tmp/fonts"
cp "$work/package/dist/katex.min.js" "$work/package/dist/katex.min.css" "$dest.tmp/"
cp "$work/package/dist/contrib/auto-render.min.js" "$dest.tmp/contrib/"
cp "$work/package/dist/fonts/"*.woff2 "$dest.tmp/fonts/"
echo "$version" > "$dest.tmp/VERSION"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
