module github.com/webvar/webvar

go 1.26.8
