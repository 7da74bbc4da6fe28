variable "project" {
  description = "Google Cloud project that runs the service."
  type        = string
}

variable "region" {
  description = "Cloud Run region."
  type        = string
  default     = "us-central1"
}

variable "service_name" {
  description = "Name of the Cloud Run service."
  type        = string
  default     = "qci-appci"
  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", var.service_name))
    error_message = "service_name must be a Cloud Run service name: lowercase letters, digits and dashes, at most 49 characters."
  }
}

variable "image" {
  description = "Container image of cmd/qci-appci, e.g. the output of `ko build --bare ./cmd/qci-appci`."
  type        = string
}

variable "exposed_url" {
  description = "Public URL of the service (QCI_EXPOSED_URL); its host is the token service, issuer and audience. Empty: the run.app URL, taken from each request."
  type        = string
  default     = ""
  validation {
    condition     = var.exposed_url == "" || can(regex("^https?://[^/]+$", var.exposed_url))
    error_message = "exposed_url must be scheme://host[:port] with no path."
  }
}

variable "upstream_url" {
  description = "Upstream registry (QCI_UPSTREAM_URL)."
  type        = string
  default     = "https://quay.io"
}

variable "upstream_repository" {
  description = "The one repository served (QCI_UPSTREAM_REPOSITORY)."
  type        = string
  default     = "openshift/ci"
}

variable "token_ttl" {
  description = "Lifetime of access tokens (QCI_TOKEN_TTL), at least 60s."
  type        = string
  default     = "1h"
}

variable "refresh_ttl" {
  description = "Lifetime of refresh tokens (QCI_REFRESH_TTL)."
  type        = string
  default     = "24h"
}

variable "authz_namespace" {
  description = "Namespace of the SubjectAccessReview (QCI_AUTHZ_NAMESPACE)."
  type        = string
  default     = "ocp"
}

variable "token_audiences" {
  description = "TokenReview audiences, comma-separated (QCI_TOKEN_AUDIENCES); empty: the API server's default."
  type        = string
  default     = ""
}

variable "review_cache_ttl" {
  description = "Longest an allowed cluster review is reused (QCI_REVIEW_CACHE_TTL)."
  type        = string
  default     = "5m"
}

variable "robot_username_secret" {
  description = "Secret Manager secret id holding the robot username."
  type        = string
  default     = "qci-appci-robot-username"
}

variable "robot_password_secret" {
  description = "Secret Manager secret id holding the robot password."
  type        = string
  default     = "qci-appci-robot-password"
}

variable "signing_key_secret" {
  description = "Secret Manager secret id holding the JWT signing keys, one per line."
  type        = string
  default     = "qci-appci-signing-key"
}

variable "kubeconfig_secret" {
  description = "Secret Manager secret id holding a kubeconfig for cluster logins; empty: cluster login off."
  type        = string
  default     = ""
}

variable "max_instances" {
  description = "Most instances Cloud Run may start."
  type        = number
  default     = 10
  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be between 1 and 1000."
  }
}

variable "concurrency" {
  description = "Concurrent requests per instance; blob streams are cheap."
  type        = number
  default     = 100
}

variable "request_timeout" {
  description = "Longest a request may take, long enough for large blobs."
  type        = string
  default     = "900s"
}

variable "custom_domain" {
  description = "Optional custom domain mapped to the service; empty: none."
  type        = string
  default     = ""
}

variable "deletion_protection" {
  description = "Refuse to delete (or replace) the Cloud Run service: every pull goes through it. Set false and apply before terraform destroy."
  type        = bool
  default     = true
}

variable "metrics_port" {
  description = "Port of the Prometheus metrics (QCI_METRICS_PORT), scraped by the sidecar."
  type        = number
  default     = 9090
  validation {
    condition     = var.metrics_port >= 1 && var.metrics_port <= 65535 && var.metrics_port != 8080
    error_message = "metrics_port must be a port other than the serving port 8080."
  }
}

variable "prometheus_sidecar" {
  description = "Run Google's Managed Service for Prometheus sidecar, which scrapes the metrics into Cloud Monitoring; false: metrics off (QCI_METRICS_PORT=0)."
  type        = bool
  default     = false
}

variable "prometheus_sidecar_image" {
  description = "Image of the Managed Service for Prometheus sidecar for Cloud Run."
  type        = string
  default     = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"
}
