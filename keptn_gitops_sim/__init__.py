"""The SIMULATED world around keptn-gitops-service, for the demo and the tests: a Kubernetes API server, the Flux
controllers, Argo CD, a real nats-server and the demo runner. The product never imports this package."""
