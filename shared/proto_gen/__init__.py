"""Generated from proto/*.proto by proto/generate.sh; do not edit by hand."""
