module hephc.dev/hephc/system/hephinit

go 1.26
