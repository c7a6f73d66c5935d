#!/usr/bin/env bash
# Issue 10: the search for a Winograd-ReLU recipe that does not under-fit, kept under its old name: exactly
# `METHOD=winograd_relu bash traces/recipes/grid.sh NETWORK` (one home: grid.sh, where the env is documented).
#
#   GRID="lr0.1:--lr 0.1" EPOCHS=60 THREADS=2 PREFIX=wr_cpu_e60 bash traces/recipes/wr_grid.sh vgg_nagadomi
METHOD=winograd_relu exec bash "$(dirname "${BASH_SOURCE[0]}")/grid.sh" "$@"
