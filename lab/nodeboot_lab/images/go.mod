module nodeboot.lab/images

go 1.24
