output "url" {
  description = "The service's URL."
  value       = var.custom_domain == "" ? google_cloud_run_v2_service.qci_appci.uri : "https://${var.custom_domain}"
}

output "podman_login" {
  description = "How a user logs in."
  value       = "podman login -u \"$(oc whoami)\" -p \"$(oc whoami -t)\" ${trimprefix(var.custom_domain == "" ? google_cloud_run_v2_service.qci_appci.uri : "https://${var.custom_domain}", "https://")}"
}
