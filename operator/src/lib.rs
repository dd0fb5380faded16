//! Tributary's Kubernetes operator (skeleton; built out under issue 4).
