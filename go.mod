module github.com/webvar/webvar

go 1.26.8

require github.com/cogentcore/webgpu v0.23.0
