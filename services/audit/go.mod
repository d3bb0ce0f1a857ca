module github.com/skao/skao-staging/services/audit

go 1.26.8

replace github.com/skao/skao-staging/libs => ../../libs
