module github.com/keptn-gitops-service/conformance

go 1.22

require github.com/keptn/go-utils v0.20.4 // indirect
