module github.com/skao/skao-staging/cmd/stagingd

go 1.26.8

replace (
	github.com/skao/skao-staging/libs => ../../libs
	github.com/skao/skao-staging/services/audit => ../../services/audit
	github.com/skao/skao-staging/services/gateway => ../../services/gateway
	github.com/skao/skao-staging/services/jupyter-bridge => ../../services/jupyter-bridge
	github.com/skao/skao-staging/services/stager => ../../services/stager
)
