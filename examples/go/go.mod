module kasplugins/example-go

go 1.19
