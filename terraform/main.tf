locals {
  secrets = merge(
    {
      robot_username = var.robot_username_secret
      robot_password = var.robot_password_secret
      signing_key    = var.signing_key_secret
    },
    var.kubeconfig_secret == "" ? {} : { kubeconfig = var.kubeconfig_secret },
    var.prometheus_sidecar ? { prometheus_config = google_secret_manager_secret.prometheus_config[0].secret_id } : {},
  )
}

# The Managed Service for Prometheus sidecar's scrape configuration (a
# RunMonitoring, read from /etc/rungmp/config.yaml): qci-appci's metrics
# port, which is not the serving port its default config scrapes.
resource "google_secret_manager_secret" "prometheus_config" {
  count     = var.prometheus_sidecar ? 1 : 0
  secret_id = "${var.service_name}-prometheus-config"
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "prometheus_config" {
  count  = var.prometheus_sidecar ? 1 : 0
  secret = google_secret_manager_secret.prometheus_config[0].id
  secret_data = yamlencode({
    apiVersion = "monitoring.googleapis.com/v1beta"
    kind       = "RunMonitoring"
    metadata   = { name = var.service_name }
    spec = {
      endpoints = [{ port = var.metrics_port, path = "/metrics", interval = "30s" }]
    }
  })
}

# The sidecar writes to Managed Service for Prometheus as the service's
# own identity.
resource "google_project_iam_member" "metric_writer" {
  count   = var.prometheus_sidecar ? 1 : 0
  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.qci_appci.email}"
}

resource "google_service_account" "qci_appci" {
  account_id   = var.service_name
  display_name = "qci-appci registry front door"
}

resource "google_secret_manager_secret_iam_member" "access" {
  for_each  = local.secrets
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.qci_appci.email}"
}

resource "google_cloud_run_v2_service" "qci_appci" {
  name     = var.service_name
  location = var.region
  ingress  = "INGRESS_TRAFFIC_ALL"
  # Every pull goes through this service: terraform destroy (or a change
  # that replaces it) fails until this is set false and applied.
  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.qci_appci.email
    timeout                          = var.request_timeout
    max_instance_request_concurrency = var.concurrency

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    volumes {
      name = "robot-username"
      secret {
        secret = var.robot_username_secret
        items {
          version = "latest"
          path    = "username"
        }
      }
    }
    volumes {
      name = "robot-password"
      secret {
        secret = var.robot_password_secret
        items {
          version = "latest"
          path    = "password"
        }
      }
    }
    volumes {
      name = "signing-key"
      secret {
        secret = var.signing_key_secret
        items {
          version = "latest"
          path    = "keys"
        }
      }
    }
    dynamic "volumes" {
      for_each = var.kubeconfig_secret == "" ? [] : [var.kubeconfig_secret]
      content {
        name = "kubeconfig"
        secret {
          secret = volumes.value
          items {
            version = "latest"
            path    = "kubeconfig"
          }
        }
      }
    }

    dynamic "volumes" {
      for_each = var.prometheus_sidecar ? [google_secret_manager_secret.prometheus_config[0].secret_id] : []
      content {
        name = "prometheus-config"
        secret {
          secret = volumes.value
          items {
            version = "latest"
            path    = "config.yaml"
          }
        }
      }
    }

    containers {
      name  = "qci-appci"
      image = var.image

      ports {
        name           = "h2c"
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "256Mi"
        }
        cpu_idle = true
      }

      env {
        name  = "QCI_EXPOSED_URL"
        value = var.exposed_url
      }
      env {
        name  = "QCI_UPSTREAM_URL"
        value = var.upstream_url
      }
      env {
        name  = "QCI_UPSTREAM_REPOSITORY"
        value = var.upstream_repository
      }
      env {
        name  = "QCI_ROBOT_USERNAME_FILE"
        value = "/secrets/robot-username/username"
      }
      env {
        name  = "QCI_ROBOT_PASSWORD_FILE"
        value = "/secrets/robot-password/password"
      }
      env {
        name  = "QCI_SIGNING_KEY_FILE"
        value = "/secrets/signing-key/keys"
      }
      env {
        name  = "QCI_TOKEN_TTL"
        value = var.token_ttl
      }
      env {
        name  = "QCI_REFRESH_TTL"
        value = var.refresh_ttl
      }
      env {
        name  = "QCI_AUTHZ_NAMESPACE"
        value = var.authz_namespace
      }
      env {
        name  = "QCI_TOKEN_AUDIENCES"
        value = var.token_audiences
      }
      env {
        name  = "QCI_REVIEW_CACHE_TTL"
        value = var.review_cache_ttl
      }
      env {
        # Failed logins are limited per client address: Cloud Run's front
        # end puts the client's address in X-Forwarded-For.
        name  = "QCI_CLIENT_IP_HEADER"
        value = "X-Forwarded-For"
      }
      env {
        name  = "QCI_METRICS_PORT"
        value = var.prometheus_sidecar ? tostring(var.metrics_port) : "0"
      }
      dynamic "env" {
        for_each = var.kubeconfig_secret == "" ? [] : ["/secrets/kubeconfig/kubeconfig"]
        content {
          name  = "QCI_KUBECONFIG"
          value = env.value
        }
      }

      volume_mounts {
        name       = "robot-username"
        mount_path = "/secrets/robot-username"
      }
      volume_mounts {
        name       = "robot-password"
        mount_path = "/secrets/robot-password"
      }
      volume_mounts {
        name       = "signing-key"
        mount_path = "/secrets/signing-key"
      }
      dynamic "volume_mounts" {
        for_each = var.kubeconfig_secret == "" ? [] : ["kubeconfig"]
        content {
          name       = volume_mounts.value
          mount_path = "/secrets/kubeconfig"
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
      }
      liveness_probe {
        http_get {
          path = "/healthz"
        }
      }
    }

    # Managed Service for Prometheus: Google's collector as a sidecar scrapes
    # QCI_METRICS_PORT and writes to Cloud Monitoring. It scrapes 10 s after
    # start and at shutdown; with cpu_idle (CPU only during requests) some
    # scrapes between requests may fail.
    dynamic "containers" {
      for_each = var.prometheus_sidecar ? [var.prometheus_sidecar_image] : []
      content {
        name       = "prometheus-collector"
        image      = containers.value
        depends_on = ["qci-appci"]
        resources {
          limits = {
            cpu    = "1"
            memory = "256Mi"
          }
          cpu_idle = true
        }
        volume_mounts {
          name       = "prometheus-config"
          mount_path = "/etc/rungmp"
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.access,
    google_secret_manager_secret_version.prometheus_config,
  ]
}

# Authentication is the function's own (/v2/auth); Cloud Run lets everyone in.
resource "google_cloud_run_v2_service_iam_member" "public" {
  name     = google_cloud_run_v2_service.qci_appci.name
  location = google_cloud_run_v2_service.qci_appci.location
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_domain_mapping" "custom" {
  count    = var.custom_domain == "" ? 0 : 1
  name     = var.custom_domain
  location = var.region
  metadata {
    namespace = var.project
  }
  spec {
    route_name = google_cloud_run_v2_service.qci_appci.name
  }
}
