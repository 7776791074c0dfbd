# Make targets for the real-Kubernetes test tooling (scripts in cluster/).
# Included by the top-level Makefile:  include mk/cluster.mk
#
#   make cluster-tools   kind, kubectl, helm into .tools/bin
#   make apiserver-bins  Kubernetes binaries (etcd, kube-apiserver, ...) into the cache dir
#   make seaweedfs       SeaweedFS's weed (the S3-compatible store of the S3 tests) into the cache dir
#   make docker-up       Docker engine running, privileged containers working
#   make base-image      local Debian base image modeldeploy/base:bookworm
#   make node-image      offline kind node image
#   make cluster         kind cluster "modeldeploy" (context kind-modeldeploy), node Ready, DNS answering
#   make cluster-down    delete it
#   make image DOCKERFILE=path IMAGE=tag [CONTEXT=dir]   build FROM the local base and load into kind
#   make test-apiserver  tests against a real API server (tests/cluster)
#   make test-e2e        end-to-end tests on the kind cluster (tests/e2e)
#
# The cache (Go builds, rootfs tarballs) lives in $(MODELDEPLOY_CACHE), default ~/.cache/modeldeploy.

CLUSTER_MK_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
CLUSTER_REPO_ROOT := $(abspath $(CLUSTER_MK_DIR)/..)
CLUSTER_SCRIPTS := $(CLUSTER_REPO_ROOT)/cluster
TOOLS_BIN ?= $(CLUSTER_REPO_ROOT)/.tools/bin
CLUSTER_PYTEST ?= python3 -m pytest
KUBECONFIG_CONTEXT ?= kind-modeldeploy

.PHONY: cluster-tools apiserver-bins seaweedfs docker-up base-image node-image cluster cluster-down image \
        test-apiserver test-e2e

cluster-tools:
	$(CLUSTER_SCRIPTS)/tools.sh

apiserver-bins:
	$(CLUSTER_SCRIPTS)/build-k8s.sh

seaweedfs:
	$(CLUSTER_SCRIPTS)/build-seaweedfs.sh >/dev/null

docker-up:
	$(CLUSTER_SCRIPTS)/docker-up.sh

base-image: docker-up
	$(CLUSTER_SCRIPTS)/base-image.sh

node-image: docker-up
	$(CLUSTER_SCRIPTS)/node-image.sh

cluster:
	$(CLUSTER_SCRIPTS)/cluster-up.sh

cluster-down:
	$(CLUSTER_SCRIPTS)/cluster-down.sh

image:
	@test -n "$(DOCKERFILE)" -a -n "$(IMAGE)" || { echo "usage: make image DOCKERFILE=path IMAGE=tag [CONTEXT=dir]"; exit 2; }
	$(CLUSTER_SCRIPTS)/build-image.sh -f $(DOCKERFILE) -t $(IMAGE) $(if $(CONTEXT),$(CONTEXT),$(CLUSTER_REPO_ROOT))

test-apiserver: apiserver-bins
	cd $(CLUSTER_REPO_ROOT) && $(CLUSTER_PYTEST) tests/cluster

test-e2e: cluster
	cd $(CLUSTER_REPO_ROOT) && PATH="$(TOOLS_BIN):$$PATH" $(CLUSTER_PYTEST) tests/e2e
