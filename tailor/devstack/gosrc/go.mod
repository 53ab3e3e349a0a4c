module tailor.dev/devstack/gosrc

go 1.24
